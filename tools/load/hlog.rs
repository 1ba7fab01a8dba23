//! `--hlog`: the HdrHistogram interval log format (as written by Java's HistogramLogWriter),
//! one tagged entry per operation per interval, values in microseconds.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Op, Recorder};
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
    }
}
