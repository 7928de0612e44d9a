//! Inotify across a rotation: a change found by a refresh replaces the file's inode and is told
//! to the kernel as a deletion (FUSE_NOTIFY_DELETE), so a watch on the file sees IN_DELETE_SELF,
//! as for a file an editor replaced by a rename; the path then reads the new value.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::Mounted;

#[test]
fn a_watch_on_a_file_sees_its_rotation() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/w/p", "v1", ParameterType::SecureString);
    let m = Mounted::start(&["--cache-ttl", "2", "--timeout", "1"], &moto.env());
    let file = m.path("ps/w/p");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "v1");
    // SAFETY: plain syscalls on descriptors this test owns; the buffer outlives the reads.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK) };
    assert!(fd >= 0);
    let path = CString::new(file.as_os_str().as_bytes()).unwrap();
    // SAFETY: as above; `path` is a valid C string.
    let watch = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_DELETE_SELF | libc::IN_ATTRIB) };
    assert!(watch >= 0);
    let rotated = Instant::now();
    aws.put_parameter("/w/p", "v2-rotated", ParameterType::SecureString);
    let mut seen = 0u32;
    let mut buffer = [0u8; 4096];
    while seen & libc::IN_DELETE_SELF == 0 && rotated.elapsed() < Duration::from_secs(8) {
        // SAFETY: reading into a buffer of the given length.
        let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        let mut at = 0usize;
        while read > 0 && at + 16 <= read as usize {
            let mask = u32::from_ne_bytes(buffer[at + 4..at + 8].try_into().unwrap());
            let len = u32::from_ne_bytes(buffer[at + 12..at + 16].try_into().unwrap()) as usize;
            seen |= mask;
            at += 16 + len;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
    assert!(seen & libc::IN_DELETE_SELF != 0, "no IN_DELETE_SELF within 8 s of the rotation (mask {seen:#x})");
    eprintln!("rotation to IN_DELETE_SELF: {:?}", rotated.elapsed());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "v2-rotated");
}
