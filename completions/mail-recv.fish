complete -c mail-recv -l domain -d 'A domain received for (repeatable; several values after one --domain)' -r
complete -c mail-recv -l deliver -d 'Store in this Maildir (ends in /) or mbox; {local} and {domain} are filled from the recipient' -r
complete -c mail-recv -l listen -d 'Listen on ADDR:PORT, a session per connection (repeatable)' -r
complete -c mail-recv -l listen-tls -d 'Listen on ADDR:PORT with implicit TLS (port 465; repeatable)' -r
complete -c mail-recv -l tls-cert -d 'Server certificate chain (PEM): offers STARTTLS' -r -F
complete -c mail-recv -l tls-key -d 'Private key of --tls-cert (PEM)' -r -F
complete -c mail-recv -l max-size -d 'Largest message in octets, announced as SIZE [default: 36700160]' -r
complete -c mail-recv -l max-sessions -d 'Concurrent sessions on the listeners; more get 421 [default: 20]' -r
complete -c mail-recv -l max-recipients -d 'Recipients per message; more get 452 [default: 100]' -r
complete -c mail-recv -l bare-lf -d 'A bare LF or CR in DATA: turn it into CRLF, or refuse the message [default: normalize]' -r -f -a "normalize\t''
reject\t''"
complete -c mail-recv -l checkpassword -d 'Offer AUTH PLAIN/LOGIN over TLS, checked by PROG (the checkpassword interface)' -r -F
complete -c mail-recv -l explain -d 'Print what RCPT TO:<ADDR> would get and why; receive nothing' -r
complete -c mail-recv -l hostname -d 'Our name in the greeting and Received [default: the host\'s FQDN]' -r
complete -c mail-recv -l timeout -d 'Idle time a client may take per command or data chunk [default: 300]' -r
complete -c mail-recv -l mda-timeout -d 'Kill the delivery COMMAND after SECS; the client gets 451 [default: 600]' -r
complete -c mail-recv -l config -d 'Config file (default ~/.config/postline/config.toml); [recv] holds defaults' -r -F
complete -c mail-recv -l queue -d 'Queue mail of authenticated clients for other domains (and, without --deliver or COMMAND, all mail) for mail-queue'
complete -c mail-recv -l lmtp -d 'Speak LMTP (RFC 2033): LHLO, one reply per recipient'
complete -c mail-recv -l log-json -d 'One JSON record per transaction on stderr'
complete -c mail-recv -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mail-recv -s V -l version -d 'Print version'
