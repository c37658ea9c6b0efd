# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mail_queue_global_optspecs
    string join \n config= queue-dir= v/verbose json h/help V/version
end

function __fish_mail_queue_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mail_queue_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mail_queue_using_subcommand
    set -l cmd (__fish_mail_queue_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mail-queue -n "__fish_mail_queue_needs_command" -l config -d 'Read this config file [default: ~/.config/postline/config.toml]' -r -F
complete -c mail-queue -n "__fish_mail_queue_needs_command" -l queue-dir -d 'The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]' -r -F
complete -c mail-queue -n "__fish_mail_queue_needs_command" -s v -l verbose -d 'Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -l json -d 'With no command: list the queue as JSON Lines'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -s V -l version -d 'Print version'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -f -a "list" -d 'List the queue, one entry per block (the default)'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -f -a "show" -d 'Show one entry: envelope, status, attempts, headers'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -f -a "flush" -d 'Try every entry (or those named) now, ignoring the backoff'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -f -a "run" -d 'Try the entries that are due (for cron)'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -f -a "hold" -d 'Keep entries from being tried until released'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -f -a "release" -d 'Release held entries and make them due now'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -f -a "delete" -d 'Remove entries without sending them or bouncing'
complete -c mail-queue -n "__fish_mail_queue_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand list" -l config -d 'Read this config file [default: ~/.config/postline/config.toml]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand list" -l queue-dir -d 'The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand list" -l json -d 'One JSON object per entry (JSON Lines)'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand list" -s v -l verbose -d 'Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand list" -s h -l help -d 'Print help'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand show" -l config -d 'Read this config file [default: ~/.config/postline/config.toml]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand show" -l queue-dir -d 'The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand show" -l json -d 'The entry\'s state as JSON'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand show" -s v -l verbose -d 'Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand show" -s h -l help -d 'Print help'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand flush" -l expire -d 'Bounce what is still undelivered this long after arrival [config: [queue] expire; default 5d]' -r
complete -c mail-queue -n "__fish_mail_queue_using_subcommand flush" -l warn-after -d 'Send the sender a "delayed" notice this long after arrival [config: [queue] warn_after; default: never]' -r
complete -c mail-queue -n "__fish_mail_queue_using_subcommand flush" -l config -d 'Read this config file [default: ~/.config/postline/config.toml]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand flush" -l queue-dir -d 'The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand flush" -l json -d 'Report each entry as a JSON object'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand flush" -s v -l verbose -d 'Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand flush" -s h -l help -d 'Print help'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand run" -l expire -d 'Bounce what is still undelivered this long after arrival [config: [queue] expire; default 5d]' -r
complete -c mail-queue -n "__fish_mail_queue_using_subcommand run" -l warn-after -d 'Send the sender a "delayed" notice this long after arrival [config: [queue] warn_after; default: never]' -r
complete -c mail-queue -n "__fish_mail_queue_using_subcommand run" -l config -d 'Read this config file [default: ~/.config/postline/config.toml]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand run" -l queue-dir -d 'The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand run" -l watch -d 'Stay running: try entries as they fall due'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand run" -l json -d 'Report each entry tried as a JSON object'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand run" -s v -l verbose -d 'Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand run" -s h -l help -d 'Print help'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand hold" -l config -d 'Read this config file [default: ~/.config/postline/config.toml]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand hold" -l queue-dir -d 'The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand hold" -s v -l verbose -d 'Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand hold" -s h -l help -d 'Print help'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand release" -l config -d 'Read this config file [default: ~/.config/postline/config.toml]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand release" -l queue-dir -d 'The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand release" -s v -l verbose -d 'Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand release" -s h -l help -d 'Print help'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand delete" -l config -d 'Read this config file [default: ~/.config/postline/config.toml]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand delete" -l queue-dir -d 'The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]' -r -F
complete -c mail-queue -n "__fish_mail_queue_using_subcommand delete" -s v -l verbose -d 'Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand delete" -s h -l help -d 'Print help'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand help; and not __fish_seen_subcommand_from list show flush run hold release delete help" -f -a "list" -d 'List the queue, one entry per block (the default)'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand help; and not __fish_seen_subcommand_from list show flush run hold release delete help" -f -a "show" -d 'Show one entry: envelope, status, attempts, headers'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand help; and not __fish_seen_subcommand_from list show flush run hold release delete help" -f -a "flush" -d 'Try every entry (or those named) now, ignoring the backoff'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand help; and not __fish_seen_subcommand_from list show flush run hold release delete help" -f -a "run" -d 'Try the entries that are due (for cron)'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand help; and not __fish_seen_subcommand_from list show flush run hold release delete help" -f -a "hold" -d 'Keep entries from being tried until released'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand help; and not __fish_seen_subcommand_from list show flush run hold release delete help" -f -a "release" -d 'Release held entries and make them due now'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand help; and not __fish_seen_subcommand_from list show flush run hold release delete help" -f -a "delete" -d 'Remove entries without sending them or bouncing'
complete -c mail-queue -n "__fish_mail_queue_using_subcommand help; and not __fish_seen_subcommand_from list show flush run hold release delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
