complete -c mail-trace -s j -l threads -d 'Read an mbox on N threads with --json or --summary [default: the number of CPUs, at most 8]' -r
complete -c mail-trace -l dns -d 'The DNS resolver to ask [default: the system\'s]' -r
complete -c mail-trace -l hop -d 'Judge SPF for hop N (its index in hops, oldest first from 0) [default: the newest external hop]' -r
complete -c mail-trace -l ip -d 'The connecting address for SPF, instead of the hop\'s' -r
complete -c mail-trace -l helo -d 'The HELO name for SPF, instead of the hop\'s' -r
complete -c mail-trace -l mail-from -d 'The envelope sender for SPF and DMARC, instead of Return-Path or the hop\'s' -r
complete -c mail-trace -l at -d 'Judge signature expiry as of TIME (RFC 5322 or RFC 3339 date) [default: the date of the receiving hop]' -r
complete -c mail-trace -l dnsbl -d 'Look the external hops\' addresses up in DNS blocklist ZONE (repeatable, or comma-separated)' -r
complete -c mail-trace -l dns-record -d 'Save every DNS answer used to FILE (a replay file)' -r -F
complete -c mail-trace -l dns-replay -d 'Answer DNS only from FILE (offline, reproducible)' -r -F
complete -c mail-trace -l json -d 'Print one JSON object per message (JSON Lines), "version": 1'
complete -c mail-trace -l summary -d 'Print, over all messages, each relay\'s hop count and median and max delay'
complete -c mail-trace -l strict -d 'Exit 1 when any anomaly is found (informational ones aside); with --verify also when a fresh result is not a pass'
complete -c mail-trace -l verify -d 'Verify DKIM, SPF, DMARC and ARC now, with DNS, beside what the receiver recorded'
complete -c mail-trace -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mail-trace -s V -l version -d 'Print version'
