//! Reading the entries of a CUDA fatbin (the container nvcc writes with `-fatbin`), so that
//! tests and diagnostics can say which GPUs the embedded kernel covers without a GPU.
//!
//! Layout (little-endian), as written by nvcc 12/13:
//! ```text
//! header: u32 magic 0xBA55ED50, u16 version, u16 header size, u64 size of all entries
//! entry:  u16 kind (1 PTX, 2 ELF/SASS), u16 version, u32 entry header size, u64 payload size,
//!         ... u32 flags-dependent fields ..., u32 sm architecture at offset 0x1c,
//!         u64 flags at offset 0x28 (0x8000: payload compressed)
//! ```
//! The parser checks every size against the buffer; a malformed file is an error, never a panic.

/// The fatbin magic number.
pub const MAGIC: u32 = 0xBA55_ED50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// PTX text, JIT-compiled by the driver for GPUs newer than the SASS entries.
    Ptx,
    /// Machine code (a cubin) for one architecture.
    Sass,
}

/// One code image inside a fatbin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub kind: EntryKind,
    /// The SM version, e.g. 90 for sm_90 / compute_90.
    pub arch: u32,
    pub compressed: bool,
    pub payload: &'a [u8],
}

impl Entry<'_> {
    /// The PTX text of an uncompressed PTX entry (without trailing NULs).
    pub fn ptx_text(&self) -> Option<&str> {
        if self.kind != EntryKind::Ptx || self.compressed {
            return None;
        }
        let end = self
            .payload
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.payload.len());
        std::str::from_utf8(&self.payload[..end]).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatbinError(pub String);

impl std::fmt::Display for FatbinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed fatbin: {}", self.0)
    }
}

impl std::error::Error for FatbinError {}

fn read<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N], FatbinError> {
    at.checked_add(N)
        .and_then(|end| data.get(at..end))
        .map(|s| s.try_into().expect("slice of N bytes"))
        .ok_or_else(|| FatbinError(format!("{N} bytes at offset {at} are past the end")))
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, FatbinError> {
    read::<2>(data, at).map(u16::from_le_bytes)
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, FatbinError> {
    read::<4>(data, at).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], at: usize) -> Result<u64, FatbinError> {
    read::<8>(data, at).map(u64::from_le_bytes)
}

/// Lists the entries of `data`.
pub fn entries(data: &[u8]) -> Result<Vec<Entry<'_>>, FatbinError> {
    let magic = u32_at(data, 0)?;
    if magic != MAGIC {
        return Err(FatbinError(format!(
            "magic {magic:#x}, expected {MAGIC:#x}"
        )));
    }
    let header_size = u16_at(data, 6)? as usize;
    let body_size = usize::try_from(u64_at(data, 8)?)
        .map_err(|_| FatbinError("entry area larger than memory".into()))?;
    let end = header_size
        .checked_add(body_size)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| {
            FatbinError(format!(
                "entries claim {body_size} bytes after a {header_size}-byte header, file has {}",
                data.len()
            ))
        })?;
    let mut out = Vec::new();
    let mut at = header_size;
    while at < end {
        let kind = match u16_at(data, at)? {
            1 => EntryKind::Ptx,
            2 => EntryKind::Sass,
            other => return Err(FatbinError(format!("unknown entry kind {other} at {at}"))),
        };
        let entry_header = u32_at(data, at + 4)? as usize;
        let payload_size = usize::try_from(u64_at(data, at + 8)?)
            .map_err(|_| FatbinError("payload larger than memory".into()))?;
        if entry_header < 0x30 {
            return Err(FatbinError(format!(
                "entry header of {entry_header} bytes at {at}"
            )));
        }
        let arch = u32_at(data, at + 0x1c)?;
        let flags = u64_at(data, at + 0x28)?;
        let start = at + entry_header;
        let stop = start
            .checked_add(payload_size)
            .filter(|&s| s <= end)
            .ok_or_else(|| FatbinError(format!("entry at {at} runs past the end")))?;
        out.push(Entry {
            kind,
            arch,
            compressed: flags & 0x8000 != 0,
            payload: &data[start..stop],
        });
        at = stop;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fatbin of one SASS and one PTX entry, laid out like nvcc's.
    fn synthetic() -> Vec<u8> {
        fn entry(kind: u16, arch: u32, payload: &[u8]) -> Vec<u8> {
            let mut e = vec![0u8; 0x40];
            e[0..2].copy_from_slice(&kind.to_le_bytes());
            e[2..4].copy_from_slice(&0x0101u16.to_le_bytes());
            e[4..8].copy_from_slice(&0x40u32.to_le_bytes());
            e[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
            e[0x1c..0x20].copy_from_slice(&arch.to_le_bytes());
            e[0x28..0x30].copy_from_slice(&0x11u64.to_le_bytes());
            e.extend_from_slice(payload);
            e
        }
        let mut body = entry(2, 80, b"\x7fELF....");
        body.extend(entry(1, 90, b".version 9.0\n.entry k(\0\0\0"));
        let mut f = Vec::new();
        f.extend_from_slice(&MAGIC.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&16u16.to_le_bytes());
        f.extend_from_slice(&(body.len() as u64).to_le_bytes());
        f.extend(body);
        f
    }

    #[test]
    fn reads_kinds_architectures_and_ptx() {
        let data = synthetic();
        let e = entries(&data).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].kind, e[0].arch), (EntryKind::Sass, 80));
        assert_eq!(e[0].payload, b"\x7fELF....");
        assert_eq!((e[1].kind, e[1].arch), (EntryKind::Ptx, 90));
        assert_eq!(e[1].ptx_text(), Some(".version 9.0\n.entry k("));
        assert_eq!(e[0].ptx_text(), None);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error() {
        let data = synthetic();
        for cut in 0..data.len() {
            assert!(entries(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = data.clone();
        bad[0] ^= 1;
        assert!(entries(&bad).unwrap_err().0.contains("magic"));
        let mut bad = data.clone();
        bad[16] = 7; // first entry's kind
        assert!(entries(&bad).unwrap_err().0.contains("kind 7"));
        let mut bad = data;
        bad[16 + 8..16 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(entries(&bad).is_err());
    }
}
