//! Logs written by the real writer, then torn or damaged on disk the way a crash or a bad
//! device would: every case either gives back every acknowledged record or is refused with the
//! typed corruption error naming the segment and offset.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use helio::log::{Durability, Log, LogConfig, LogError};
use helio::recovery::RecoveryError;
use helio_core::log::frame::Op;

mod common;
use common::{op_payload, Rng};

fn config() -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, buffer_bytes: 64 << 10, ..LogConfig::default() }
}

struct Image {
    /// Payloads of the acknowledged (`Sync`) records, in order.
    acked: Vec<Vec<u8>>,
    /// Log address past the last acknowledged record.
    acked_end: u64,
    /// Log address past everything written.
    end: u64,
}

/// Acknowledged records, then a tail of records nobody was told about (written and flushed,
/// as a crash could leave them, but never acknowledged); the log is left as a crash leaves it
/// (no clean close: the superblock does not cover the tail).
fn write_image(dir: &Path) -> Image {
    let (log, _) = Log::open(dir, &config(), |_, _| {}).unwrap();
    let mut acked = Vec::new();
    let mut acked_end = 0;
    for i in 0..1200u64 {
        let value = vec![i as u8; (i as usize * 53) % 700];
        acked_end = log
            .append_op(&Op { sn: i, key: &i.to_be_bytes(), value: Some(&value) }, Durability::Sync)
            .unwrap();
        acked.push(op_payload(i, &value));
    }
    let mut end = 0;
    for i in 1200..1500u64 {
        let value = vec![i as u8; (i as usize * 29) % 300];
        end = log
            .append_op(&Op { sn: i, key: &i.to_be_bytes(), value: Some(&value) }, Durability::None)
            .unwrap();
    }
    log.sync().unwrap();
    // Crash: the superblock keeps the tail of the last clean close (none), the files stay.
    std::mem::forget(log);
    Image { acked, acked_end, end }
}

fn segment_of(dir: &Path, lsn: u64) -> (std::path::PathBuf, u64) {
    let segment = 1u64 << 20;
    (dir.join(format!("segment-{:016x}", lsn / segment)), lsn % segment)
}

fn check(dir: &Path, image: &Image, case: &str) -> Result<(), LogError> {
    let mut seen = Vec::new();
    Log::read(dir, &config(), |_, p| seen.push(p.to_vec()))?;
    assert!(seen.len() >= image.acked.len(), "{case}: acknowledged records lost");
    assert_eq!(seen[..image.acked.len()], image.acked[..], "{case}");
    Ok(())
}

#[test]
fn truncating_the_unacknowledged_tail_anywhere_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    assert!(image.end - image.acked_end > 20_000);
    for cut in (image.acked_end..image.end).step_by(8) {
        let (path, offset) = segment_of(dir.path(), cut);
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        let mut rest = vec![0; (len - offset) as usize];
        file.read_exact_at(&mut rest, offset).unwrap();
        file.write_all_at(&vec![0; rest.len()], offset).unwrap();
        check(dir.path(), &image, &format!("cut at {cut}")).unwrap();
        file.write_all_at(&rest, offset).unwrap();
    }
}

#[test]
fn bit_flips_are_cut_in_the_tail_and_refused_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_image(dir.path());
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut refused, mut cut) = (0, 0);
    for _ in 0..1500 {
        let rng = rng.next();
        let lsn = rng % (image.end + 4096);
        let bit = 1u8 << (rng >> 60 & 7);
        let (path, offset) = segment_of(dir.path(), lsn);
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).unwrap();
        file.write_all_at(&[byte[0] ^ bit], offset).unwrap();
        match check(dir.path(), &image, &format!("bit flip at {lsn}")) {
            Ok(()) => {
                assert!(lsn >= image.acked_end, "flip at {lsn} inside acknowledged records went unnoticed");
                cut += 1;
            }
            Err(LogError::Recovery(RecoveryError::Corrupt { segment, offset: at, .. })) => {
                assert!(lsn < image.acked_end, "flip at {lsn} in the unacknowledged tail refused");
                assert_eq!(segment, path);
                assert!(at <= offset, "the damaged frame starts at or before the flip");
                refused += 1;
            }
            Err(e) => panic!("flip at {lsn}: {e}"),
        }
        file.write_all_at(&byte, offset).unwrap();
    }
    assert!(refused > 100 && cut > 10, "refused {refused}, cut {cut}");
}
