complete -c mail-send -s f -s r -d 'Envelope sender (<> or empty for the null sender)' -r
complete -c mail-send -s F -d 'Sender\'s full name for a From: field that is added' -r
complete -c mail-send -s N -d 'DSN NOTIFY: never, or success,failure,delay' -r
complete -c mail-send -s R -d 'DSN RET: full or hdrs' -r
complete -c mail-send -s V -d 'DSN envelope id' -r
complete -c mail-send -s B -d 'Body type (7BIT, 8BITMIME); accepted, 8BITMIME is announced when needed' -r
complete -c mail-send -s o -d 'sendmail -o options: -oi is -i; others (-oem, -odi, ...) are ignored' -r
complete -c mail-send -s b -d '-bm: send (default); -bs: SMTP on stdin/stdout; -bp: list the queue' -r -f -a "m\t''
s\t''
p\t''"
complete -c mail-send -s q -d 'Run the queue (mail-queue run)' -r
complete -c mail-send -s O -s C -s L -s X -s A -d 'Other sendmail options with a value (-O, -C, -L, -X, -A): ignored' -r
complete -c mail-send -l config -d 'Config file (default ~/.config/postline/config.toml)' -r -F
complete -c mail-send -s a -l account -d 'Send through this [account.NAME]' -r
complete -c mail-send -l host -d 'One-off smarthost (no config needed)' -r
complete -c mail-send -l port -d 'Port of --host' -r
complete -c mail-send -l tls -d 'starttls (default; required), implicit or none' -r
complete -c mail-send -l tls-ca-file -d 'Also trust the CA certificate(s) in FILE (PEM)' -r -F
complete -c mail-send -l tls-fingerprint -d 'Accept exactly the server certificate with this SHA-256 fingerprint' -r
complete -c mail-send -l user -d 'Login name' -r
complete -c mail-send -l password-command -d 'Run COMMAND with sh -c; its first output line is the password or OAuth2 token' -r
complete -c mail-send -l password-env -d 'Take the password or token from $VAR' -r
complete -c mail-send -l auth -d 'AUTH mechanism: plain, login or xoauth2 [default: the best of plain and login offered]' -r
complete -c mail-send -l timeout -d 'Connect and read timeout in seconds [default: 60]' -r
complete -c mail-send -l helo -d 'Name to say in EHLO' -r
complete -c mail-send -l lmtp -d 'Deliver to this LMTP server' -r
complete -c mail-send -l resolver -d 'DNS server for MX lookups' -r
complete -c mail-send -l mx-port -d 'SMTP port on MX hosts (default 25)' -r
complete -c mail-send -l queue-dir -d 'The queue spool directory' -r -F
complete -c mail-send -l version -d 'Print the version'
complete -c mail-send -s t -d 'Read recipients from To, Cc and Bcc; remove Bcc'
complete -c mail-send -s i -d 'A line with a single dot does not end the input'
complete -c mail-send -s U -s n -s G -s m -d 'Other sendmail flags (-U, -n, -G, -m): ignored'
complete -c mail-send -s v -l verbose -d 'Show the SMTP transcript (AUTH redacted) and each recipient\'s outcome'
complete -c mail-send -l direct -d 'Deliver straight to each recipient domain\'s MX hosts'
complete -c mail-send -l no-queue -d 'On a temporary failure exit 75 instead of queueing'
complete -c mail-send -l explain -d 'Print the route that would be taken; send nothing'
complete -c mail-send -s h -l help -d 'Print help'
