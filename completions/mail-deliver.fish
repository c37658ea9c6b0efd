complete -c mail-deliver -l folder -d 'Deliver into the Maildir++ subfolder NAME (e.g. Lists/rust -> .Lists.rust)' -r
complete -c mail-deliver -s f -l sender -d 'Envelope sender: sets Return-Path (replacing any) and the mbox From_ line' -r
complete -c mail-deliver -l recipient -d 'Envelope recipient: adds Delivered-To; a message already delivered to ADDR is refused as a loop' -r
complete -c mail-deliver -l dedup-size -d 'Message-IDs remembered per destination for --dedup' -r
complete -c mail-deliver -l mbox-format -d 'Quoting of From_ lines in mbox files (and in --split input)' -r -f -a "mboxrd\t''
mboxo\t''"
complete -c mail-deliver -l locking -d 'mbox locks to take, comma-separated: dotlock, fcntl, flock' -r
complete -c mail-deliver -l sieve -d 'Filter the message through the Sieve SCRIPT into the Maildir\'s folders [config: [deliver] sieve]' -r
complete -c mail-deliver -l check -d 'Only compile the Sieve SCRIPT and report errors with line and column' -r
complete -c mail-deliver -l now -d 'With --sieve: the time the date tests see (epoch seconds or RFC 3339)' -r
complete -c mail-deliver -l expect -d 'With --sieve: run every DIR/NAME.eml through the script, compare with DIR/NAME.expect; store nothing' -r
complete -c mail-deliver -l lock-timeout -d 'Give up waiting for an mbox lock after SECONDS (exit 75)' -r
complete -c mail-deliver -l split -d 'Read an mbox stream on stdin and deliver every message in it, with grouped fsyncs'
complete -c mail-deliver -s v -l print-path -d 'Print the path of each stored message, one per line'
complete -c mail-deliver -l dedup -d 'Skip a message whose Message-ID was recently delivered to the same destination'
complete -c mail-deliver -l dry-run -d 'With --sieve: store nothing, print one record per action with its script line and test'
complete -c mail-deliver -l json -d 'With --dry-run: one JSON object per action'
complete -c mail-deliver -l expect-update -d 'With --expect: write each NAME.expect from the current results'
complete -c mail-deliver -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mail-deliver -s V -l version -d 'Print version'
