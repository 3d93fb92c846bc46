//! The pcap backend: each port may read its input from a capture and write its output to
//! another. Input is merged across ports by timestamp; frames that share a timestamp form one
//! batch (so a capture can say which frames may be processed together), and the pipeline runs
//! at the capture's time, which makes runs deterministic.

use crate::pcap::{PcapError, PcapReader, PcapWriter};
use crate::{Backend, Batch, TxReport};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use switch_core::packet::{OwnedBuf, PacketBuf, PortId, DEFAULT_BUF_SIZE, DEFAULT_HEADROOM};
use switch_core::pipeline::Verdict;

/// Files of one port.
#[derive(Debug, Clone)]
pub struct PcapPort {
    pub port: PortId,
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
}

#[derive(Debug)]
struct Input {
    port: PortId,
    reader: PcapReader<BufReader<File>>,
    next: Option<(u64, Vec<u8>)>,
}

/// Why the pcap backend could not start or stopped.
#[derive(Debug)]
pub enum PcapBackendError {
    Open(PathBuf, PcapError),
    Create(PathBuf, std::io::Error),
}

impl std::error::Error for PcapBackendError {}

impl std::fmt::Display for PcapBackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PcapBackendError::Open(p, e) => write!(f, "cannot read capture {}: {e}", p.display()),
            PcapBackendError::Create(p, e) => write!(f, "cannot create capture {}: {e}", p.display()),
        }
    }
}

/// Captures in, captures out.
#[derive(Debug)]
pub struct PcapBackend {
    inputs: Vec<Input>,
    outputs: Vec<Option<PcapWriter<BufWriter<File>>>>,
    pool: Vec<OwnedBuf>,
    now: u64,
    /// First error met while reading (the backend then stops delivering).
    pub error: Option<String>,
    /// Records longer than a buffer: delivered cut and marked, so that the pipeline counts
    /// them as `frame_exceeds_buffer` drops on their port.
    pub oversized: u64,
}

impl PcapBackend {
    /// Opens every input and creates every output. `ports` is the number of switch ports.
    pub fn open(files: &[PcapPort], ports: usize, buffers: usize) -> Result<PcapBackend, PcapBackendError> {
        let mut inputs = Vec::new();
        let mut outputs: Vec<Option<PcapWriter<BufWriter<File>>>> = (0..ports).map(|_| None).collect();
        for f in files {
            if let Some(p) = &f.input {
                let mut reader = PcapReader::open(p).map_err(|e| PcapBackendError::Open(p.clone(), e))?;
                let mut buf = Vec::new();
                let next =
                    reader.next_into(&mut buf).map_err(|e| PcapBackendError::Open(p.clone(), e))?.map(|ts| (ts, buf));
                inputs.push(Input { port: f.port, reader, next });
            }
            if let Some(p) = &f.output {
                let w = PcapWriter::create(p).map_err(|e| PcapBackendError::Create(p.clone(), e))?;
                if let Some(slot) = outputs.get_mut(f.port.index()) {
                    *slot = Some(w);
                }
            }
        }
        Ok(PcapBackend {
            inputs,
            outputs,
            pool: (0..buffers).map(|_| OwnedBuf::new(DEFAULT_BUF_SIZE, DEFAULT_HEADROOM)).collect(),
            now: 0,
            error: None,
            oversized: 0,
        })
    }

    /// Flushes every output.
    pub fn finish(&mut self) -> std::io::Result<()> {
        for w in self.outputs.iter_mut().flatten() {
            w.flush()?;
        }
        Ok(())
    }

    fn advance(&mut self, i: usize) {
        let inp = &mut self.inputs[i];
        let mut buf = inp.next.take().map(|(_, b)| b).unwrap_or_default();
        match inp.reader.next_into(&mut buf) {
            Ok(Some(ts)) => inp.next = Some((ts, buf)),
            Ok(None) => {}
            Err(e) => self.error = Some(e.to_string()),
        }
    }
}

impl Backend for PcapBackend {
    type Buf = OwnedBuf;

    fn rx_burst(&mut self, batch: &mut Batch<OwnedBuf>, now: &mut u64) -> usize {
        if self.error.is_some() {
            return 0;
        }
        let Some(ts) = self.inputs.iter().filter_map(|i| i.next.as_ref().map(|(t, _)| *t)).min() else {
            return 0;
        };
        self.now = ts;
        *now = ts;
        let mut n = 0;
        for i in 0..self.inputs.len() {
            while !batch.is_full() && self.inputs[i].next.as_ref().is_some_and(|(t, _)| *t == ts) {
                let Some(mut buf) = self.pool.pop() else { return n };
                let port = self.inputs[i].port;
                if let Some((_, f)) = self.inputs[i].next.as_ref() {
                    // A record longer than a buffer goes in cut and marked, so the pipeline
                    // counts it on its port instead of it vanishing here.
                    buf.load_cut(f, f.len(), port, DEFAULT_HEADROOM);
                    self.oversized += u64::from(buf.truncated_from().is_some());
                    match batch.push(buf) {
                        Ok(()) => n += 1,
                        Err(b) => self.pool.push(b),
                    }
                } else {
                    self.pool.push(buf);
                }
                self.advance(i);
            }
        }
        n
    }

    fn tx_burst(
        &mut self,
        batch: &mut Batch<OwnedBuf>,
        verdicts: &[Verdict],
        on_fail: &mut dyn FnMut(PortId, usize),
    ) -> TxReport {
        let mut rep = TxReport::default();
        let (outs, pool, ts) = (&mut self.outputs, &mut self.pool, self.now);
        let mut err = None;
        batch.drain_into(|i, buf| {
            if let Some(Verdict::Tx(p)) = verdicts.get(i) {
                match outs.get_mut(p.index()) {
                    Some(Some(w)) => match w.write(ts, buf.data()) {
                        Ok(()) => rep.sent += 1,
                        Err(e) => {
                            err = Some(e.to_string());
                            on_fail(*p, buf.data().len());
                            rep.failed += 1;
                        }
                    },
                    // A port without an output file discards what it is given.
                    Some(None) => rep.sent += 1,
                    None => {
                        on_fail(*p, buf.data().len());
                        rep.failed += 1;
                    }
                }
            }
            pool.push(buf);
        });
        if err.is_some() {
            self.error = err;
        }
        rep
    }

    fn exhausted(&self) -> bool {
        self.error.is_some() || self.inputs.iter().all(|i| i.next.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::{read_file, write_file};

    #[test]
    fn merges_by_timestamp_and_batches_equal_times() {
        let dir = std::env::temp_dir().join(format!("podswitch-pcapbe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.pcap");
        let b = dir.join("b.pcap");
        let out = dir.join("out.pcap");
        write_file(&a, &[(10, vec![1; 60]), (30, vec![3; 60])]).unwrap();
        write_file(&b, &[(10, vec![2; 60]), (20, vec![4; 60])]).unwrap();
        let files = vec![
            PcapPort { port: PortId(0), input: Some(a), output: None },
            PcapPort { port: PortId(1), input: Some(b), output: Some(out.clone()) },
        ];
        let mut be = PcapBackend::open(&files, 2, 16).unwrap();
        let mut batch = Batch::with_capacity(8);
        let mut now = 0;
        let mut order = vec![];
        while !be.exhausted() {
            let n = be.rx_burst(&mut batch, &mut now);
            order.push((now, n, batch.as_slice().iter().map(|b| b.data()[0]).collect::<Vec<_>>()));
            let v = vec![Verdict::Tx(PortId(1)); n];
            be.tx_burst(&mut batch, &v, &mut |_, _| {});
        }
        be.finish().unwrap();
        assert_eq!(order, vec![(10, 2, vec![1, 2]), (20, 1, vec![4]), (30, 1, vec![3])]);
        let written = read_file(&out).unwrap();
        assert_eq!(
            written.iter().map(|(t, f)| (*t, f[0])).collect::<Vec<_>>(),
            vec![(10, 1), (10, 2), (20, 4), (30, 3)]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_longer_than_a_buffer_is_counted_as_a_drop() {
        use switch_core::drop::DropReason;
        use switch_core::pipeline::{Worker, WorkerConfig};
        use switch_core::testbed as tb;
        let dir = std::env::temp_dir().join(format!("podswitch-pcapbe-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("jumbo.pcap");
        // A 9000-byte jumbo frame on the uplink, then an ordinary one.
        write_file(&a, &[(10, vec![0xab; 9000]), (20, vec![1; 60])]).unwrap();
        let files = vec![PcapPort { port: tb::UPLINK, input: Some(a), output: None }];
        let mut be = PcapBackend::open(&files, 5, 4).unwrap();
        let t = tb::tables(tb::Scale::default());
        let mut w = Worker::new(WorkerConfig::default());
        let mut batch = Batch::with_capacity(8);
        let mut now = 0;
        let mut frames = 0;
        while !be.exhausted() {
            let n = be.rx_burst(&mut batch, &mut now);
            let mut v = vec![Verdict::Drop(DropReason::NoRoute); n];
            w.process(&t, now, batch.as_mut_slice(), &mut v);
            frames += n;
            be.tx_burst(&mut batch, &v, &mut |_, _| {});
        }
        assert_eq!(frames, 2, "no record vanishes");
        assert_eq!(be.oversized, 1);
        let p = w.stats().ports[tb::UPLINK.index()];
        assert_eq!(p.drops[DropReason::FrameExceedsBuffer.index()], 1);
        assert_eq!((p.rx_packets, p.rx_bytes), (2, 9060));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_input_is_a_clear_error() {
        let files = vec![PcapPort { port: PortId(0), input: Some("/nonexistent/x.pcap".into()), output: None }];
        let e = PcapBackend::open(&files, 1, 4).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.pcap"), "{e}");
    }
}
