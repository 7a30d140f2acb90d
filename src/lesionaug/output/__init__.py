"""Step 5, the output: an augmented folder that is complete, verifiable and resumable.

``layout.py`` says where things go; ``folder.py`` links the originals and extends the label files;
``pair_writer.py`` writes pairs off the hot loop; ``manifest.py`` and ``run_record.py`` are the two
records; ``lock.py`` keeps one writer per folder; ``resume_state.py`` reads what a folder already
holds; ``disk_space.py`` checks the run fits; ``verify.py`` and ``merge.py`` check and join folders;
``synthetic_pairs.py`` reads synthetic pairs back.
"""
