# postline: build, install, test.
#   make              build release binaries
#   make demo         deliver the bundled examples into a fresh Maildir
#   make test         every test (installs missing Debian test packages as root)
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make completions  regenerate completions/ from the clap definitions
#   make fuzz         run every cargo-fuzz target FUZZ_SECONDS each (nightly + cargo-fuzz)
PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
DATADIR = $(PREFIX)/share
CARGO ?= cargo
TOOLS = mail-deliver mail-trace mail-send mail-queue mail-fetch mail-recv
DEMO_DIR ?= /var/tmp/postline-demo

.PHONY: all build demo test lint deps install uninstall completions fuzz clean

all: build

build:
	$(CARGO) build --release --locked

demo: build
	rm -rf "$(DEMO_DIR)"
	for f in examples/*.eml; do ./target/release/mail-deliver --print-path "$(DEMO_DIR)/Maildir/" < "$$f"; done
	./target/release/mail-deliver --split --print-path "$(DEMO_DIR)/archive.mbox" < examples/sample.mbox

deps:
	sh tests/deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test: deps lint
	CI=$${CI:-} $(CARGO) test --locked

install: build
	for t in $(TOOLS); do \
	  install -Dm755 target/release/$$t "$(DESTDIR)$(BINDIR)/$$t"; \
	  install -Dm644 man/$$t.1 "$(DESTDIR)$(MANDIR)/man1/$$t.1"; \
	  install -Dm644 completions/$$t.bash "$(DESTDIR)$(DATADIR)/bash-completion/completions/$$t"; \
	  install -Dm644 completions/_$$t "$(DESTDIR)$(DATADIR)/zsh/site-functions/_$$t"; \
	  install -Dm644 completions/$$t.fish "$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/$$t.fish"; \
	done
	install -Dm644 man/postline.7 "$(DESTDIR)$(MANDIR)/man7/postline.7"

uninstall:
	for t in $(TOOLS); do \
	  rm -f "$(DESTDIR)$(BINDIR)/$$t" "$(DESTDIR)$(MANDIR)/man1/$$t.1" \
	    "$(DESTDIR)$(DATADIR)/bash-completion/completions/$$t" \
	    "$(DESTDIR)$(DATADIR)/zsh/site-functions/_$$t" \
	    "$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/$$t.fish"; \
	done
	rm -f "$(DESTDIR)$(MANDIR)/man7/postline.7"

completions:
	$(CARGO) run --locked --example gen-completions

FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && for t in $$(cargo fuzz list); do \
	  cargo +nightly fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	$(CARGO) clean
