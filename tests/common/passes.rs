//! Many parameters in a local store, full passes over them through a mount, and the daemon's
//! counters after each pass: shared by the memory test and its benchmark.

use std::path::Path;

/// The value of parameter `index`: `len` bytes, unique to it.
pub fn bulk_value(index: usize, len: usize) -> String {
    format!("{index:0>len$}")
}

/// Write a local store of `count` parameters of `len` bytes, `per_dir` to a directory:
/// `/bulk/d0000/p000000`, ...
pub fn write_bulk_store(path: &Path, count: usize, per_dir: usize, len: usize) {
    let parameters: serde_json::Map<String, serde_json::Value> =
        (0..count).map(|i| (format!("/bulk/d{:04}/p{i:06}", i / per_dir), bulk_value(i, len).into())).collect();
    let store = serde_json::json!({ "parameters": parameters, "secrets": {} });
    std::fs::write(path, serde_json::to_vec(&store).unwrap()).unwrap();
}

/// Read every file under `mount/ps/bulk`, directory by directory in name order as a scan
/// does, checking each value; returns how many were read.
pub fn read_bulk_pass(mount: &Path, len: usize) -> usize {
    let root = mount.join("ps/bulk");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    let mut read = 0;
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let index: usize = file.file_name().unwrap().to_str().unwrap()[1..].parse().unwrap();
            let value = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(value, bulk_value(index, len).as_bytes(), "{}", file.display());
            read += 1;
        }
    }
    read
}

/// The number before ` {label}` on the `ps:` line of a `.secretfs/status` text (`calls`,
/// `evicted`, `values`), if the build shows it.
pub fn ps_status_figure(status: &str, label: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("ps: "))?;
    let words: Vec<&str> = line.split([' ', ',', ';']).filter(|w| !w.is_empty()).collect();
    words.windows(2).find(|pair| pair[1] == label).and_then(|pair| pair[0].parse().ok())
}
