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
# mail-deliver runs once per message (an MTA starts it for each one), so its
# process start-up is most of its CPU time: it is built static (static-pie,
# glibc's libc.a) with no dynamic loader, libgcc_s or relocations of shared
# objects to pay for (BENCHMARKS.md, "Deliver": 42 % fewer instructions per
# message). It needs no NSS (it never calls getpwnam and friends: checked
# with nm) and no libssl, so static glibc changes nothing it does. Static
# non-PIE (add -C relocation-model=static) saves another 35,000
# instructions (~10 us) a message but gives up ASLR for a program that
# parses mail from strangers: not the default. It is also linked with fat
# LTO in one codegen unit (210,000 -> 194,000 instructions and 95 -> 87
# page faults a delivery; 0.728 -> 0.703 ms a message on tmpfs), and
# started without Rust's runtime set-up (src/bin/mail-deliver.rs, no_main).
# DELIVER_STATIC=0 builds it like the others.
DELIVER_STATIC ?= 1
DELIVER_RUSTFLAGS ?= -C target-feature=+crt-static
HOST_TRIPLE = $(shell $(CARGO) -vV 2>/dev/null | sed -n 's/^host: //p')
ifeq ($(DELIVER_STATIC),1)
DELIVER_BIN = target/$(HOST_TRIPLE)/release/mail-deliver
else
DELIVER_BIN = target/release/mail-deliver
endif

.PHONY: all build demo test lint deps install uninstall completions fuzz clean

all: build

# The static mail-deliver is built with --target, so that its flags apply to
# it and its crates only, not to build scripts and proc macros (which cannot
# be static); it lands in target/HOST/release/.
build:
	$(CARGO) build --release --locked
ifeq ($(DELIVER_STATIC),1)
	RUSTFLAGS="$(DELIVER_RUSTFLAGS)" CARGO_PROFILE_RELEASE_LTO=fat \
	  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 $(CARGO) build --release --locked \
	  --bin mail-deliver --target $(HOST_TRIPLE)
	@if nm $(DELIVER_BIN) 2>/dev/null | grep -Eq ' [TUW] (getpw|getgrnam|getgrgid|getgrent|getaddrinfo|gethostby)'; then \
	  echo "make: the static mail-deliver calls NSS (getpw*, getgr*, getaddrinfo): build with DELIVER_STATIC=0" >&2; exit 1; fi
endif

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
	  bin=target/release/$$t; [ $$t != mail-deliver ] || bin=$(DELIVER_BIN); \
	  install -Dm755 $$bin "$(DESTDIR)$(BINDIR)/$$t"; \
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
