#compdef lesionaug

_lesionaug_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _LESIONAUG_COMPLETE=complete_zsh lesionaug)
}

compdef _lesionaug_completion lesionaug
