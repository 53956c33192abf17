//! Link settings for the `rhaibot` executable: both only make it smaller in memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RHAIBOT_PORTABLE");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if packs_relative_relocations() {
        // Packed relative relocations (DT_RELR): the executable's ~60,000 relative relocations
        // take 24 KB instead of 1.5 MB. The loader reads that table at every start and its
        // pages stayed resident: about 1.9 MiB of peak RSS (bench/NOTES.md, "Memory").
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = Path::new(env("CARGO_MANIFEST_DIR").as_str()).join("tools/link-order.txt");
    if order.is_file() {
        println!("cargo:rerun-if-changed=tools/link-order.txt");
        let args = [format!("-Wl,--symbol-ordering-file={}", order.display()), "-Wl,--no-warn-symbol-ordering".into()];
        if env("PROFILE") == "release" && linker_takes(&args) {
            // The functions a running bot executes, placed together (tools/link_order.sh): the
            // kernel maps code 64 KiB around each page first run, so spread out they made 9
            // MiB of the executable resident, packed together about 4. Names the linker does
            // not find (another toolchain, other dependency versions) are skipped.
            for arg in args {
                println!("cargo:rustc-link-arg-bins={arg}");
            }
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Whether the executable can use DT_RELR: a native build for glibc 2.36 or newer, whose
/// loader understands it (an older one refuses such a binary by its `GLIBC_ABI_DT_RELR`
/// requirement), with the default linker. `RHAIBOT_PORTABLE=1` builds for older glibc too.
fn packs_relative_relocations() -> bool {
    let native = env("HOST") == env("TARGET") && std::env::var_os("RUSTC_LINKER").is_none();
    if env("CARGO_CFG_TARGET_OS") != "linux" || env("CARGO_CFG_TARGET_ENV") != "gnu" || !native {
        return false;
    }
    env("RHAIBOT_PORTABLE") != "1" && glibc_version().is_some_and(|version| version >= (2, 36))
}

/// Whether the linker this build uses takes `args` (lld reads a symbol ordering file; GNU ld
/// refuses the option): an empty program linked the way the executable will be.
fn linker_takes(args: &[String]) -> bool {
    let out = PathBuf::from(env("OUT_DIR"));
    let source = out.join("link_probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let mut rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    rustc.arg("--target").arg(env("TARGET")).arg("-o").arg(out.join("link_probe")).arg(&source);
    rustc.args(env("CARGO_ENCODED_RUSTFLAGS").split('\x1f').filter(|flag| !flag.is_empty()));
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let mut flag = std::ffi::OsString::from("linker=");
        flag.push(linker);
        rustc.arg("-C").arg(flag);
    }
    for arg in args {
        rustc.arg("-C").arg(format!("link-arg={arg}"));
    }
    rustc.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|status| status.success())
}

/// The running glibc's version, from `gnu_get_libc_version`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_version() -> Option<(u32, u32)> {
    // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_str().ok()?;
    let mut parts = text.split('.').map(|part| part.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_version() -> Option<(u32, u32)> {
    None
}
