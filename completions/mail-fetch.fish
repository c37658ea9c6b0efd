complete -c mail-fetch -l config -d 'Read accounts from FILE [default: ~/.config/postline/config.toml]' -r
complete -c mail-fetch -l imap -d 'Fetch from this IMAP server (no config needed)' -r
complete -c mail-fetch -l pop3 -d 'Fetch from this POP3 server (no config needed)' -r
complete -c mail-fetch -l tls -d 'starttls (default; required), implicit or none' -r
complete -c mail-fetch -l tls-ca-file -d 'Also trust the CA certificate(s) in FILE (PEM)' -r -F
complete -c mail-fetch -l tls-fingerprint -d 'Accept exactly the server certificate with this SHA-256 fingerprint' -r
complete -c mail-fetch -l user -d 'Login name' -r
complete -c mail-fetch -l password-command -d 'Run COMMAND with sh -c; its first output line is the password or OAuth2 token' -r
complete -c mail-fetch -l password-env -d 'Take the password or token from $VAR' -r
complete -c mail-fetch -l auth -d 'plain, login or xoauth2; POP3 also apop or user [default: plain when offered]' -r
complete -c mail-fetch -l timeout -d 'Connect and read timeout in seconds [default: 60]' -r
complete -c mail-fetch -l folder -d 'IMAP folder to fetch (repeatable; default INBOX)' -r
complete -c mail-fetch -l max-messages -d 'Fetch at most N messages per account and run' -r
complete -c mail-fetch -l max-size -d 'Leave messages larger than BYTES on the server (reported)' -r
complete -c mail-fetch -l batch -d 'Messages per FETCH and per grouped sync [default: 250]' -r
complete -c mail-fetch -l maildir -d 'Store into the Maildir DIR' -r
complete -c mail-fetch -l mbox -d 'Append to the mbox FILE' -r
complete -c mail-fetch -l mda -d 'Pipe each message to COMMAND (sh -c; %F sender, %T recipient)' -r
complete -c mail-fetch -l mda-timeout -d 'Kill an MDA still running after SECONDS; the message stays [default: 600]' -r
complete -c mail-fetch -l smtp -d 'Hand each message to this SMTP server (plain, port 25)' -r
complete -c mail-fetch -l lmtp -d 'Hand each message to this LMTP server (port 24) or unix socket' -r
complete -c mail-fetch -l recipient -d 'Envelope recipient for --mda, --smtp, --lmtp [default: your login name]' -r
complete -c mail-fetch -l daemon -d 'Poll forever, every SECONDS (longer after errors)' -r
complete -c mail-fetch -l keep -d 'Leave messages on the server; fetch only new ones next time'
complete -c mail-fetch -l unseen -d 'IMAP: new mail is what is UNSEEN (and is marked \\Seen once stored)'
complete -c mail-fetch -l mark-seen -d 'IMAP: mark kept messages \\Seen once stored'
complete -c mail-fetch -l stdout -d 'Write an mboxrd stream to stdout; nothing is deleted on the server'
complete -c mail-fetch -l idle -d 'IMAP: wait for new mail with IDLE on every account and folder, forever'
complete -c mail-fetch -s v -l verbose -d 'Print the protocol transcript on stderr (credentials redacted)'
complete -c mail-fetch -s q -l quiet -d 'Print only errors'
complete -c mail-fetch -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mail-fetch -s V -l version -d 'Print version'
