//! Link settings for the `rhaibot` executable: both only make it smaller in memory.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=tools/link-order.txt");
    if packs_relative_relocations() {
        // Packed relative relocations (DT_RELR): the executable's ~60,000 relative relocations
        // take 24 KB instead of 1.5 MB. The loader reads that table at every start and its
        // pages stayed resident: about 1.9 MiB of peak RSS (bench/NOTES.md, "Memory").
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = Path::new(env("CARGO_MANIFEST_DIR").as_str()).join("tools/link-order.txt");
    if order.is_file() && links_with_rusts_lld() {
        // The functions a running bot executes, placed together (tools/link_order.sh): the
        // kernel maps code 64 KiB around each page first run, so spread out they made 9 MiB
        // of the executable resident, packed together 3 MiB. Names the linker does not find
        // (another toolchain, other dependency versions) are skipped without a word.
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Whether the executable can use DT_RELR: a native build for glibc 2.36 or newer, whose
/// loader understands it. (An older glibc's loader refuses such a binary by its
/// `GLIBC_ABI_DT_RELR` version requirement; a cross build cannot ask the target's glibc.)
fn packs_relative_relocations() -> bool {
    let native = env("HOST") == env("TARGET");
    if env("CARGO_CFG_TARGET_OS") != "linux" || env("CARGO_CFG_TARGET_ENV") != "gnu" || !native {
        return false;
    }
    glibc_version().is_some_and(|version| version >= (2, 36))
}

/// Whether a release build links with the lld that rustc ships, which reads a symbol ordering
/// file: rustc's default on x86_64 Linux since 1.90, unless a linker is configured.
fn links_with_rusts_lld() -> bool {
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    env("PROFILE") == "release"
        && env("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !flags.contains("linker")
        && !flags.contains("link-self-contained")
        && rustc_minor().is_some_and(|minor| minor >= 90)
}

/// The minor version of the compiler building this crate (`rustc -vV`'s `release: 1.N.x`).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = std::process::Command::new(rustc).arg("-vV").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let release = text.lines().find_map(|line| line.strip_prefix("release: "))?;
    release.split('.').nth(1)?.parse().ok()
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
