//! `--hlog`: the HdrHistogram interval log format (as written by Java's HistogramLogWriter),
//! one tagged entry per operation per interval, values in microseconds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::stats::Sample;

/// An open interval log.
pub struct HlogWriter {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl HlogWriter {
    /// Creates the file and writes the header; timestamps are relative to `start`.
    pub fn create(path: &Path, start: SystemTime) -> io::Result<HlogWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        let secs = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // The header lines Java's HistogramLogWriter writes; the crate's builder would write
        // the StartTime but not the legend, so all of it is written here.
        writeln!(
            out,
            "#[Logged with ringpost-load {}]",
            env!("CARGO_PKG_VERSION")
        )?;
        writeln!(out, "#[Histogram log format version 1.3]")?;
        writeln!(out, "#[Values are latencies in microseconds]")?;
        writeln!(out, "#[StartTime: {secs:.3} (seconds since epoch)]")?;
        writeln!(
            out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        Ok(HlogWriter {
            out,
            serializer: V2DeflateSerializer::new(),
        })
    }

    /// Writes one entry per operation of `sample`, tagged with the operation name.
    pub fn write_interval(
        &mut self,
        sample: &Sample,
        begin: Duration,
        length: Duration,
    ) -> io::Result<()> {
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        for (op, h) in &sample.hists {
            writer
                .write_histogram(h, begin, length, Tag::new(op.name()))
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
        }
        Ok(())
    }

    /// Flushes the file.
    pub fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Why an interval log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HlogReadError {
    /// The file could not be read.
    #[error("{0}: {1}")]
    Read(String, io::Error),
    /// A line is neither a comment nor an interval entry.
    #[error("{0}: not an interval log (byte {1})")]
    Parse(String, usize),
    /// An entry's histogram does not decode.
    #[error("{0}: bad histogram in entry {1}: {2}")]
    Histogram(String, usize, String),
}

/// Reads interval logs and merges every entry into one histogram per tag (untagged entries
/// go under `-`).
pub fn read_logs(
    paths: &[std::path::PathBuf],
) -> Result<BTreeMap<String, Histogram<u64>>, HlogReadError> {
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    let mut out: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut de = Deserializer::new();
    for path in paths {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| HlogReadError::Read(name.clone(), e))?;
        for (i, entry) in IntervalLogIterator::new(&bytes).enumerate() {
            let entry = entry.map_err(|e| match e {
                hdrhistogram::serialization::interval_log::LogIteratorError::ParseError {
                    offset,
                } => HlogReadError::Parse(name.clone(), offset),
            })?;
            let LogEntry::Interval(ih) = entry else {
                continue;
            };
            let bad = |e: String| HlogReadError::Histogram(name.clone(), i, e);
            let raw = base64::engine::general_purpose::STANDARD
                .decode(ih.encoded_histogram())
                .map_err(|e| bad(e.to_string()))?;
            let h: Histogram<u64> = de
                .deserialize(&mut io::Cursor::new(raw))
                .map_err(|e| bad(format!("{e:?}")))?;
            let tag = ih.tag().map_or("-", |t| t.as_str()).to_string();
            match out.get_mut(&tag) {
                Some(total) => total.add(&h).map_err(|e| bad(format!("{e:?}")))?,
                None => {
                    let mut total = crate::stats::new_histogram();
                    total.add(&h).map_err(|e| bad(format!("{e:?}")))?;
                    out.insert(tag, total);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Op, Recorder};

    #[test]
    fn reading_garbage_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.hlog");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"Tag=x,0.0,1.0,2.0,HISTnotbase64!\n")
            .unwrap();
        assert!(read_logs(&[path]).is_err());
        assert!(matches!(
            read_logs(&[dir.path().join("missing")]),
            Err(HlogReadError::Read(..))
        ));
    }
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn log_reads_back_with_tags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hlog");
        let mut w = HlogWriter::create(&path, SystemTime::now()).unwrap();
        let r = Recorder::new(false);
        r.record(Op::Data, Duration::from_micros(700));
        r.record(Op::Mail, Duration::from_micros(90));
        w.write_interval(&r.take(), Duration::ZERO, Duration::from_secs(1))
            .unwrap();
        r.record(Op::Data, Duration::from_micros(800));
        w.write_interval(&r.take(), Duration::from_secs(1), Duration::from_secs(1))
            .unwrap();
        w.finish().unwrap();
        let text = std::fs::read(&path).unwrap();
        let mut tags = Vec::new();
        let mut start_time = false;
        for entry in IntervalLogIterator::new(&text) {
            match entry.unwrap() {
                LogEntry::StartTime(_) => start_time = true,
                LogEntry::Interval(h) => tags.push(h.tag().map(|t| t.as_str().to_string())),
                LogEntry::BaseTime(_) => {}
            }
        }
        assert!(start_time);
        assert_eq!(
            tags,
            vec![
                Some("mail".into()),
                Some("data".into()),
                Some("data".into())
            ]
        );
        let merged = read_logs(&[path]).unwrap();
        assert_eq!(merged["data"].len(), 2);
        assert_eq!(merged["mail"].len(), 1);
        assert!(merged["data"].max() >= 800);
    }
}
