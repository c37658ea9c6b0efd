complete -c mail-queue -s h -l help -d 'Print help'
complete -c mail-queue -s V -l version -d 'Print version'
