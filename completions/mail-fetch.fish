complete -c mail-fetch -s h -l help -d 'Print help'
complete -c mail-fetch -s V -l version -d 'Print version'
