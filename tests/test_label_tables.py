"""External label tables (`--labels FILE`): every ISIC vocabulary read, joined by id, conflicts refused,
unknown values reported; `info` shows the labelled fraction and warns when diagnoses are missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import layout_fixtures as fx
import pytest
from typer.testing import CliRunner

from lesionaug.cli import app
from lesionaug.dataset.index import load_dataset
from lesionaug.dataset.label_read import labels_from_row
from lesionaug.dataset.label_tables import read_label_table
from lesionaug.dataset.labels import DIAGNOSES, DIAGNOSIS_ALIASES
from lesionaug.errors import DatasetError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "label-tables.md"
TASK1_IDS = [fx.isic_id(k) for k in range(8)]  # fx.write_isic2018: 4 train, 2 val, 2 test


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def task1(tmp_path: Path) -> Path:
    """ISIC 2018 Task 1 images without any diagnosis of their own, as in the real release."""
    root = tmp_path / "isic2018"
    fx.write_isic2018(root, task3=False)
    return root


# ------------------------------------------------------------------------------------- the vocabularies

TABLES = {
    "isic_archive": (
        [
            "isic_id,attribution,copyright_license,age_approx,anatom_site_general,diagnosis_1,diagnosis_2,diagnosis_3,sex",
            'ISIC_0000000,x,CC-0,55,posterior torso,Malignant,"Malignant melanocytic proliferations (Melanoma)",'
            "Melanoma in situ,male",
            "ISIC_0000001,x,CC-BY,30,head/neck,Benign,Benign melanocytic proliferations,Nevus,female",
            'ISIC_0000002,x,CC-0,70,,Malignant,"Malignant epidermal proliferations","Squamous cell carcinoma, Invasive",',
        ],
        {
            "ISIC_0000000": {"diagnosis": "mel", "site": "posterior torso", "age": 55, "sex": "male"},
            "ISIC_0000001": {"diagnosis": "nv", "site": "head or neck", "age": 30, "sex": "female"},
            "ISIC_0000002": {"diagnosis": "scc", "age": 70},
        },
    ),
    "isic2019_ground_truth": (
        [
            "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK",
            "ISIC_0000000,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,0.0",
            "ISIC_0000001,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,0.0",
        ],
        {"ISIC_0000000": {"diagnosis": "ak"}, "ISIC_0000001": {"diagnosis": "scc"}},
    ),
    "isic2019_metadata": (
        ["image,age_approx,anatom_site_general,lesion_id,sex", "ISIC_0000000,45.0,lower extremity,BCN_0001,female"],
        {"ISIC_0000000": {"age": 45, "site": "lower extremity", "sex": "female", "extra": {"lesion_id": "BCN_0001"}}},
    ),
    "isic2018_task3": (
        ["image,MEL,NV,BCC,AKIEC,BKL,DF,VASC", "ISIC_0000003,0.0,0.0,0.0,1.0,0.0,0.0,0.0"],
        {"ISIC_0000003": {"diagnosis": "akiec"}},
    ),
    "isic2017_part3": (
        [
            "image_id,melanoma,seborrheic_keratosis",
            "ISIC_0000000,1.0,0.0",
            "ISIC_0000001,0.0,1.0",
            "ISIC_0000002,0.0,0.0",
        ],
        {"ISIC_0000000": {"diagnosis": "mel"}, "ISIC_0000001": {"diagnosis": "sk"}, "ISIC_0000002": {"diagnosis": "nevus"}},
    ),
    "ham10000_metadata": (
        ["lesion_id,image_id,dx,dx_type,age,sex,localization", "HAM_0000118,ISIC_0027419,bkl,histo,80.0,male,scalp"],
        {"ISIC_0027419": {"diagnosis": "bkl", "age": 80, "sex": "male", "site": "scalp"}},
    ),
    "isic2020": (
        [
            "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target",
            "ISIC_2637011,IP_7279968,male,45.0,head/neck,unknown,benign,0",
            "ISIC_0015719,IP_3075186,female,45.0,upper extremity,nevus,benign,0",
        ],
        {"ISIC_2637011": {"diagnosis": "benign", "sex": "male"}, "ISIC_0015719": {"diagnosis": "nv"}},
    ),
    "isic2016": (
        ["ISIC_0000000,benign", "ISIC_0000001,malignant"],
        {"ISIC_0000000": {"diagnosis": "benign"}, "ISIC_0000001": {"diagnosis": "malignant"}},
    ),
}


@pytest.mark.parametrize("fmt", TABLES)
def test_each_vocabulary_is_recognised_and_mapped_to_prompt_codes(tmp_path: Path, fmt: str) -> None:
    lines, expected = TABLES[fmt]
    table = read_label_table(write_csv(tmp_path / f"{fmt}.csv", lines))
    assert table.format == fmt
    for image_id, want in expected.items():
        got = table.labels[image_id].to_dict()
        assert {k: got.get(k) for k in want} == want, (image_id, got)
    assert table.unknown_values == {}


def test_values_without_a_prompt_equivalent_are_counted_not_dropped_silently(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "metadata.csv",
        [
            "isic_id,diagnosis_1,diagnosis_2,diagnosis_3,sex",
            "ISIC_0000000,Benign,Benign melanocytic proliferations,Lentigo simplex,female",
            "ISIC_0000001,Benign,Benign melanocytic proliferations,Lentigo simplex,other",
            "ISIC_0000002,Indeterminate,,,male",
            "ISIC_0000003,Benign,Benign melanocytic proliferations,Nevus,male",
        ],
    )
    table = read_label_table(path)
    # The deepest level decides; where it has no equivalent a shallower one may still give a code.
    assert table.labels["ISIC_0000000"].diagnosis == "benign"
    assert table.labels["ISIC_0000002"].diagnosis is None
    assert table.labels["ISIC_0000003"].diagnosis == "nv"
    assert table.unknown_values == {
        "diagnosis_1": {"Indeterminate": 1},
        "diagnosis_3": {"Lentigo simplex": 2},
        "sex": {"other": 1},
    }


def test_legacy_flat_diagnosis_falls_back_to_benign_malignant_and_reports_the_value(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "old.csv",
        ["isic_id,benign_malignant,diagnosis", "ISIC_0000000,malignant,AIMP", "ISIC_0000001,benign,angioma"],
    )
    table = read_label_table(path)
    assert table.labels["ISIC_0000000"].diagnosis == "malignant"
    assert table.labels["ISIC_0000001"].diagnosis == "vasc"
    assert table.unknown_values == {"diagnosis": {"AIMP": 1}}


@pytest.mark.parametrize(
    "lines, message",
    [(["name_of_thing,x", "a,b"], "no image id column"), (["isic_id,sex"], "no rows")],
)
def test_a_table_that_names_no_images_is_refused(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(DatasetError, match=message) as info:
        read_label_table(write_csv(tmp_path / "t.csv", lines))
    assert info.value.exit_code == 3 and info.value.fix


# ----------------------------------------------------------------------------------- joined by image id


def test_tables_join_onto_task1_images_in_order_and_change_the_fingerprint(task1: Path, tmp_path: Path) -> None:
    gt = write_csv(
        tmp_path / "ISIC_2019_Training_GroundTruth.csv",
        ["image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"]
        + [f"{i},{'1.0' if k % 2 else '0.0'},{'0.0' if k % 2 else '1.0'},0,0,0,0,0,0,0" for k, i in enumerate(TASK1_IDS)],
    )
    meta = write_csv(
        tmp_path / "ISIC_2019_Training_Metadata.csv",
        ["image,age_approx,anatom_site_general,lesion_id,sex", "ISIC_0000001,60.0,anterior torso,BCN_0000001,male"],
    )
    bare = load_dataset(task1)
    joined = load_dataset(task1, labels=[gt, meta])
    by_id = {s.id: s.labels for s in joined.samples}
    assert [by_id[i].diagnosis for i in TASK1_IDS] == ["nv", "mel"] * 4
    assert by_id["ISIC_0000001"].to_dict()["extra"] == {"lesion_id": "BCN_0000001"}
    assert (by_id["ISIC_0000001"].age, by_id["ISIC_0000001"].site) == (60, "anterior torso")
    # The layout's own labels stay: Task 2 attributes of the training images.
    assert {s.id: s.labels.attributes for s in bare.samples} == {s.id: s.labels.attributes for s in joined.samples}
    assert joined.fingerprint != bare.fingerprint
    assert [(t["format"], t["rows"], t["matched"]) for t in joined.label_tables] == [
        ("isic2019_ground_truth", 8, 8),
        ("isic2019_metadata", 1, 1),
    ]


@pytest.mark.parametrize(
    "first, second, kept",
    [
        ("diagnosis_3=Seborrheic keratosis", "dx=bkl", {"diagnosis": "sk"}),  # sk refines bkl
        ("dx=bkl", "diagnosis_3=Seborrheic keratosis", {"diagnosis": "sk"}),
        ("dx=nv", "diagnosis_3=Nevus", {"diagnosis": "nv"}),
        ("diagnosis_1=Benign", "dx=df", {"diagnosis": "df"}),
        ("age_approx=45", "age=50", {"age": 45}),
        ("localization=back", "anatom_site_general=posterior torso", {"site": "back"}),
    ],
)
def test_agreeing_sources_keep_the_more_specific_or_the_first(task1, tmp_path, first, second, kept) -> None:
    a = _one_row_table(tmp_path / "a.csv", first)
    b = _one_row_table(tmp_path / "b.csv", second)
    labels = {s.id: s.labels.to_dict() for s in load_dataset(task1, labels=[a, b]).samples}["ISIC_0000000"]
    assert {k: labels.get(k) for k in kept} == kept


@pytest.mark.parametrize(
    "first, second, field",
    [
        ("dx=mel", "diagnosis_3=Nevus", "diagnosis"),
        ("sex=male", "sex=female", "sex"),
        ("age_approx=30", "age=45", "age"),
        ("localization=face", "anatom_site_general=lower extremity", "site"),
    ],
)
def test_conflicting_sources_exit_3_naming_both_files(task1, tmp_path, first, second, field) -> None:
    a = _one_row_table(tmp_path / "first.csv", first)
    b = _one_row_table(tmp_path / "second.csv", second)
    with pytest.raises(DatasetError, match=f"conflicting {field} for ISIC_0000000") as info:
        load_dataset(task1, labels=[a, b])
    assert str(a) in info.value.message and str(b) in info.value.message

    result = invoke("info", str(task1), "--labels", str(a), "--labels", str(b), "--json")
    assert result.exit_code == 3
    error = json.loads(result.stdout)["errors"][0]
    assert str(a) in error["message"] and str(b) in error["message"]


def test_the_layouts_own_label_file_is_named_in_a_conflict(tmp_path: Path) -> None:
    root = tmp_path / "isic2018"
    fx.write_isic2018(root)  # its Task 3 table says ISIC_0000000 is MEL
    other = _one_row_table(tmp_path / "other.csv", "dx=nv")
    with pytest.raises(DatasetError, match="'mel' in ISIC2018_Task3_Training_GroundTruth") as info:
        load_dataset(root, labels=[other])
    assert str(other) in info.value.message


def _one_row_table(path: Path, cell: str) -> Path:
    column, value = cell.split("=")
    id_column = "image_id" if column in ("dx", "localization", "age") else "isic_id"
    return write_csv(path, [f"{id_column},{column}", f"ISIC_0000000,{value}"])


# --------------------------------------------------------------------------------------- the CLI side


def test_info_reports_fractions_tables_and_warns_when_diagnoses_are_missing(task1: Path, tmp_path: Path) -> None:
    bare = invoke("info", str(task1), "--json")
    assert bare.exit_code == 0
    data = json.loads(bare.stdout)["data"]
    assert data["labels"]["fraction"]["diagnosis"] == 0.0
    assert data["labels"]["fraction"]["attributes"] == 0.5  # the 4 training images of 8 have Task 2 attributes
    assert len(data["warnings"]) == 1 and "--labels" in data["warnings"][0]
    assert "0 of 4 real training images have a diagnosis" in bare.stderr and "--labels" in bare.stderr

    table = write_csv(
        tmp_path / "metadata.csv",
        ["isic_id,diagnosis_3,sex"] + [f"{i},Nevus,male" for i in TASK1_IDS[:6]] + ["ISIC_0000006,Lentigo simplex,"],
    )
    joined = invoke("info", str(task1), "--labels", str(table), "--json")
    data = json.loads(joined.stdout)["data"]
    assert data["warnings"] == []
    assert data["labels"]["fraction"]["diagnosis"] == 0.75 and data["labels"]["fraction"]["sex"] == 0.75
    assert data["label_tables"] == [
        {
            "path": str(table),
            "format": "isic_archive",
            "rows": 7,
            "matched": 7,
            "unknown_values": {"diagnosis_3": {"Lentigo simplex": 1}},
        }
    ]
    assert 'diagnosis_3 "Lentigo simplex" (1)' in joined.stderr
    human = invoke("info", str(task1), "--labels", str(table))
    assert "labelled fraction" in human.stdout and "7 of 7 rows match" in human.stdout


def test_a_table_that_labels_no_image_here_is_a_warning_naming_the_id_ranges(task1: Path, tmp_path: Path) -> None:
    task3 = write_csv(
        tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv",
        ["image,MEL,NV,BCC,AKIEC,BKL,DF,VASC", "ISIC_0024306,0.0,1.0,0.0,0.0,0.0,0.0,0.0"],
    )
    result = invoke("info", str(task1), "--labels", str(task3))
    assert result.exit_code == 0
    assert "none of its 1 rows names an image" in result.stderr and "ISIC_0024306" in result.stderr


def test_missing_table_exits_3_before_reading_the_dataset(tmp_path: Path) -> None:
    result = invoke("info", str(tmp_path / "no-dataset"), "--labels", str(tmp_path / "missing.csv"), "--json")
    assert result.exit_code == 3
    assert "label table is not found" in json.loads(result.stdout)["errors"][0]["message"]


def test_every_command_that_reads_a_dataset_takes_labels() -> None:
    for command in ("info", "masks", "augment", "train", "evaluate", "quality", "datalist"):
        result = invoke(command, "--help")
        assert "--labels" in result.stdout, command


def test_labels_in_an_augment_config_file(tmp_path: Path) -> None:
    root = tmp_path / "isic2018"
    fx.write_isic2018(root, task3=False)
    table = write_csv(tmp_path / "gt.csv", ["image_id,melanoma,seborrheic_keratosis"] + [f"{i},1.0,0.0" for i in TASK1_IDS])
    config = tmp_path / "ci.toml"
    config.write_text(f'n = 4\nsize = "32"\n[augment]\nlabels = ["{table}"]\n', encoding="utf-8")
    result = invoke("augment", str(root), "--config", str(config), "--dry-run", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["label_counts"]["diagnosis"] == {"mel": 4}
    # One table as a plain string, and a config file from before --label-mix.
    config.write_text(f'n = 4\nsize = "32"\nlabels = "{table}"\n', encoding="utf-8")
    single = invoke("augment", str(root), "--config", str(config), "--dry-run", "--json", "-q")
    assert single.exit_code == 0 and json.loads(single.stdout)["data"]["label_counts"]["diagnosis"] == {"mel": 4}
    config.write_text('n = 4\nsize = "32"\nlabels = "balanced"\n', encoding="utf-8")
    old = invoke("augment", str(root), "--config", str(config), "--dry-run", "--json", "-q")
    assert old.exit_code == 2 and "--label-mix balanced" in json.loads(old.stdout)["errors"][0]["fix"]


# --------------------------------------------------------------------------------- the documented mapping


def _doc_rows() -> list[tuple[str, str]]:
    """(value, code) rows of the mapping table in docs/label-tables.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Diagnosis values", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \| `([a-z_]+)` \|", section, re.MULTILINE)


def test_the_documented_mapping_is_the_one_the_code_uses() -> None:
    rows = _doc_rows()
    assert len(rows) >= len(DIAGNOSIS_ALIASES)
    for value, code in rows:
        assert labels_from_row({"diagnosis": value}).diagnosis == code, value
    documented = {re.sub(r"\s+", " ", v.replace(",", " ")).strip().lower() for v, _ in rows}
    assert set(DIAGNOSIS_ALIASES) <= documented
    assert {code for _, code in rows} <= set(DIAGNOSES)
