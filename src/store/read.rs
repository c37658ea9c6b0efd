//! The reading side of the store: the messages of a Maildir (`cur/` and
//! `new/`) or of an mbox, one at a time, whole or header block only.
//!
//! Owns how postline walks mail it did not just write: which files of a
//! Maildir are messages (regular files in `cur/` and `new/`, in name
//! order), how a stream is told to be one message or an mbox (its first
//! line that is not blank starts with `From `), and the bound on what is
//! held. Guarantees: memory stays at one message (with
//! [`Extent::Headers`], one header block of at most [`HEADER_LIMIT`]
//! bytes: the body is never read from a file, and a longer line or block
//! is read past, never held); never fails on content; an unreadable Maildir file is one item's error,
//! never the end of the walk.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Chain, Cursor, Read};
use std::path::{Path, PathBuf};

use crate::exit::{Context, Error, Kind, Result};
pub use crate::mboxfmt::HEADER_LIMIT;
pub use crate::mboxfmt::{Entry, Piece, Pieces};
use crate::mboxfmt::{Format, Splitter, read_line_limited};

/// How much of each message is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The whole message.
    Whole,
    /// The header block (through its empty line), at most [`HEADER_LIMIT`]
    /// bytes of it; the body is skipped.
    Headers,
}

/// One message read from a file or a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its bytes, as stored (line endings untouched).
    pub data: Vec<u8>,
    /// With [`Extent::Headers`]: the header block reached [`HEADER_LIMIT`]
    /// and the rest of it was not read.
    pub cut: bool,
}

impl Message {
    fn new(data: Vec<u8>, extent: Extent) -> Message {
        let cut = extent == Extent::Headers && data.len() >= HEADER_LIMIT;
        Message { data, cut }
    }
}

/// The messages of a Maildir, file by file, `cur/` then `new/`, each in
/// name order (the names begin with the delivery time).
pub struct MaildirReader {
    files: std::vec::IntoIter<PathBuf>,
    extent: Extent,
}

impl MaildirReader {
    /// List the messages of the Maildir `dir`. A directory with neither
    /// `cur/` nor `new/` is not a Maildir ([`Kind::Data`]); a listing that
    /// fails is an I/O error naming the directory.
    pub fn open(dir: &Path, extent: Extent) -> Result<MaildirReader> {
        let mut files = Vec::new();
        let mut any = false;
        for sub in ["cur", "new"] {
            let d = dir.join(sub);
            let rd = match std::fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
            };
            any = true;
            for e in rd {
                let e = e.with_context(|| format!("reading {}", d.display()))?;
                // Not followed: a link or a directory in cur/ is no message.
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    files.push(e.path());
                }
            }
        }
        if !any {
            return Err(Error::new(
                Kind::Data,
                format!("reading {}", dir.display()),
                "a directory that is not a Maildir (no cur/ or new/)",
            ));
        }
        files.sort();
        Ok(MaildirReader {
            files: files.into_iter(),
            extent,
        })
    }
}

impl MaildirReader {
    /// Keep only the files last modified at or after `since` (a search for
    /// what a recent run stored: mail-fetch's in-flight batch). A file whose
    /// time cannot be read is left out.
    pub fn modified_since(self, since: std::time::SystemTime) -> MaildirReader {
        let files: Vec<PathBuf> = self
            .files
            .filter(|p| {
                std::fs::symlink_metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since)
            })
            .collect();
        MaildirReader {
            files: files.into_iter(),
            extent: self.extent,
        }
    }
}

/// The messages of the bytes `start..end` of the mbox file `path` (mboxrd
/// quoting undone), one at a time: for reading back what one append wrote.
/// `start` must be where a `From ` line begins.
pub fn mbox_range(
    path: &Path,
    start: u64,
    end: u64,
) -> io::Result<MboxReader<io::Take<BufReader<File>>>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(start))?;
    let r = BufReader::new(f).take(end.saturating_sub(start));
    let input = BufReader::with_capacity(1 << 16, Cursor::new(Vec::new()).chain(r));
    Ok(MboxReader {
        splitter: Splitter::new(input, Format::Mboxrd),
    })
}

impl Iterator for MaildirReader {
    /// A file's path and its message, or why it could not be read.
    type Item = (PathBuf, Result<Message>);

    fn next(&mut self) -> Option<Self::Item> {
        let path = self.files.next()?;
        let read = || -> io::Result<Vec<u8>> {
            match self.extent {
                Extent::Whole => std::fs::read(&path),
                Extent::Headers => {
                    read_header_block(BufReader::new(File::open(&path)?), Vec::new())
                }
            }
        };
        let msg = read()
            .with_context(|| format!("reading {}", path.display()))
            .map(|data| Message::new(data, self.extent));
        Some((path, msg))
    }
}

/// A stream (a message file, an mbox, standard input), told apart by its
/// first line that is not blank.
pub enum Stream<R> {
    /// One message (leading blank lines included, as read).
    Message(Message),
    /// An mbox: its messages one at a time.
    Mbox(MboxReader<R>),
}

/// The messages of an mbox stream (mboxrd quoting undone), one at a time.
pub struct MboxReader<R> {
    splitter: Splitter<BufReader<Chain<Cursor<Vec<u8>>, R>>>,
}

impl<R: BufRead> MboxReader<R> {
    /// The next message (its `From ` line's sender and its bytes);
    /// `Ok(None)` at the end.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        self.splitter.next_entry()
    }
}

impl<R: BufRead> MboxReader<R> {
    /// The stream, not yet read, cut into pieces of whole messages for
    /// readers on several threads (see [`Pieces`]); each piece is read
    /// with [`piece_headers`]. Only before the first [`Self::next_entry`].
    pub fn into_pieces(self, target: usize) -> Pieces<BufReader<Chain<Cursor<Vec<u8>>, R>>> {
        Pieces::new(self.splitter.into_input(), target)
    }
}

/// The header blocks of the messages of one piece from [`Pieces`]
/// (`data` and `starts` of [`Piece::Messages`]), read in place, one at a
/// time; bodies are not read again.
pub fn piece_headers<'a>(data: &'a [u8], starts: &'a [usize]) -> impl Iterator<Item = Entry> + 'a {
    crate::mboxfmt::header_blocks(data, starts)
}

/// The rest of a stream after [`Piece::Rest`], read by one splitter, as
/// [`MboxReader`] reads it.
pub fn mbox_rest<R: BufRead>(pieces: Pieces<R>) -> MboxReader<Chain<Cursor<Vec<u8>>, R>> {
    // The empty prefix gives the reader the one shape every MboxReader
    // has (what `open_stream` had read ahead, then the stream).
    let input =
        BufReader::with_capacity(1 << 16, Cursor::new(Vec::new()).chain(pieces.into_rest()));
    MboxReader {
        splitter: Splitter::new(input, Format::Mboxrd).headers_only(),
    }
}

/// Look at `r`: an mbox when its first line that is not blank starts with
/// `From `, else one message, read now (with [`Extent::Headers`], up to its
/// empty line and never past [`HEADER_LIMIT`]).
pub fn open_stream<R: BufRead>(mut r: R, extent: Extent) -> io::Result<Stream<R>> {
    let limit = match extent {
        Extent::Whole => usize::MAX,
        Extent::Headers => HEADER_LIMIT,
    };
    let mut prefix = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let room = limit.saturating_sub(prefix.len());
        if room == 0 || read_line_limited(&mut r, &mut line, room)? == 0 {
            break;
        }
        prefix.extend_from_slice(&line);
        if !line.trim_ascii().is_empty() {
            break;
        }
    }
    if line.starts_with(b"From ") {
        // The lines already read go first again; the splitter wants them.
        let input = BufReader::with_capacity(1 << 16, Cursor::new(prefix).chain(r));
        let splitter = Splitter::new(input, Format::Mboxrd);
        let splitter = match extent {
            Extent::Whole => splitter,
            Extent::Headers => splitter.headers_only(),
        };
        return Ok(Stream::Mbox(MboxReader { splitter }));
    }
    let data = match extent {
        Extent::Whole => {
            let mut data = prefix;
            r.read_to_end(&mut data)?;
            data
        }
        Extent::Headers => read_header_block(r, prefix)?,
    };
    Ok(Stream::Message(Message::new(data, extent)))
}

/// Read up to and including the first empty line (LF or CRLF), after
/// `buf`'s bytes, and no more than [`HEADER_LIMIT`] bytes in all: what
/// follows the block is never read.
fn read_header_block<R: BufRead>(mut r: R, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    if buf.ends_with(b"\n\n") || buf.ends_with(b"\n\r\n") {
        return Ok(buf);
    }
    let mut line = Vec::new();
    while buf.len() < HEADER_LIMIT {
        line.clear();
        if read_line_limited(&mut r, &mut line, HEADER_LIMIT - buf.len())? == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&line);
        if line == b"\n" || line == b"\r\n" {
            return Ok(buf);
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_of_an_mbox_and_the_young_files_of_a_maildir() {
        let d = tempfile::tempdir().unwrap();
        let mb = d.path().join("mbox");
        let first = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: 1\n\none\n\n";
        let rest = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: 2\n\n>From two\n\nFrom a@b Thu Jan  1 00:00:00 1970\nSubject: 3\n\nthree\n\n";
        std::fs::write(&mb, [&first[..], &rest[..]].concat()).unwrap();
        let start = first.len() as u64;
        let mut r = mbox_range(&mb, start, start + rest.len() as u64).unwrap();
        let mut got = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            got.push(e.data);
        }
        assert_eq!(
            got,
            vec![
                b"Subject: 2\n\nFrom two\n".to_vec(),
                b"Subject: 3\n\nthree\n".to_vec()
            ]
        );
        let md = d.path().join("md");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        std::fs::write(md.join("cur/1.old"), b"old\n").unwrap();
        let since = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let f = File::create(md.join("new/2.young")).unwrap();
        f.set_modified(since).unwrap();
        let young: Vec<PathBuf> = MaildirReader::open(&md, Extent::Whole)
            .unwrap()
            .modified_since(since)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(young, vec![md.join("new/2.young")]);
    }

    fn messages<R: BufRead>(s: Stream<R>) -> Vec<Vec<u8>> {
        match s {
            Stream::Message(m) => vec![m.data],
            Stream::Mbox(mut mb) => {
                let mut v = Vec::new();
                while let Some(e) = mb.next_entry().unwrap() {
                    v.push(e.data);
                }
                v
            }
        }
    }

    #[test]
    fn a_stream_is_one_message_or_an_mbox_by_its_first_line() {
        let one = b"\n\nSubject: a\n\nbody\nFrom x\n".to_vec();
        let got = messages(open_stream(&one[..], Extent::Whole).unwrap());
        assert_eq!(got, vec![one.clone()]);
        let got = messages(open_stream(&one[..], Extent::Headers).unwrap());
        assert_eq!(got, vec![b"\n\nSubject: a\n\n".to_vec()]);

        let mbox = b"\nFrom a@b Tue Jan  2 12:00:00 2024\nSubject: 1\n\n>From here\n\nFrom c@d Tue Jan  2 12:00:01 2024\r\nSubject: 2\r\n\r\nx\r\n";
        let got = messages(open_stream(&mbox[..], Extent::Whole).unwrap());
        assert_eq!(
            got,
            vec![
                b"Subject: 1\n\nFrom here\n".to_vec(),
                b"Subject: 2\n\nx\n".to_vec()
            ]
        );
        let got = messages(open_stream(&mbox[..], Extent::Headers).unwrap());
        assert_eq!(
            got,
            vec![b"Subject: 1\n\n".to_vec(), b"Subject: 2\n\n".to_vec()]
        );
    }

    #[test]
    fn a_header_block_is_cut_at_the_limit() {
        // One huge "line" (a sparse file of NUL bytes looks like this):
        // read past, never held.
        let endless = io::repeat(b'x').take(3 * HEADER_LIMIT as u64);
        let Stream::Message(m) = open_stream(BufReader::new(endless), Extent::Headers).unwrap()
        else {
            panic!("not one message");
        };
        assert!(m.cut);
        assert!(m.data.len() <= HEADER_LIMIT + 1);
    }

    #[test]
    fn a_maildir_is_cur_then_new_in_name_order_and_a_bad_file_is_one_error() {
        let dir = std::env::temp_dir().join(format!("postline-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("new/2.x"), b"Subject: new\n\nbody\n").unwrap();
        std::fs::write(dir.join("cur/9.x:2,S"), b"Subject: cur\n\nbody\n").unwrap();
        std::fs::write(dir.join("tmp/1.x"), b"Subject: tmp\n\n").unwrap();
        std::fs::create_dir(dir.join("new/not-a-message")).unwrap();
        let got: Vec<(String, Vec<u8>)> = MaildirReader::open(&dir, Extent::Headers)
            .unwrap()
            .map(|(p, m)| {
                let name = p.strip_prefix(&dir).unwrap().display().to_string();
                (name, m.unwrap().data)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("cur/9.x:2,S".to_string(), b"Subject: cur\n\n".to_vec()),
                ("new/2.x".to_string(), b"Subject: new\n\n".to_vec()),
            ]
        );
        let mut r = MaildirReader::open(&dir, Extent::Whole).unwrap();
        std::fs::remove_file(dir.join("cur/9.x:2,S")).unwrap();
        let (_, first) = r.next().unwrap();
        let e = first.unwrap_err();
        assert!(e.to_string().starts_with("reading "), "{e}");
        assert_eq!(r.next().unwrap().1.unwrap().data, b"Subject: new\n\nbody\n");
        assert!(r.next().is_none());

        let e = MaildirReader::open(&dir.join("tmp"), Extent::Whole)
            .err()
            .unwrap();
        assert_eq!(e.kind(), Kind::Data);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
