complete -c mail-send -s h -l help -d 'Print help'
complete -c mail-send -s V -l version -d 'Print version'
