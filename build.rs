//! Link settings for the `rhaibot` executable.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if packs_relative_relocations() {
        // Packed relative relocations (DT_RELR): the executable's ~60,000 relative relocations
        // take 24 KB instead of 1.5 MB. The loader reads that table at every start and its
        // pages stayed resident: about 1.9 MiB of peak RSS (bench/NOTES.md, "Memory").
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the executable can use DT_RELR: a native build for glibc 2.36 or newer, whose
/// loader understands it. (An older glibc's loader refuses such a binary by its
/// `GLIBC_ABI_DT_RELR` version requirement; a cross build cannot ask the target's glibc.)
fn packs_relative_relocations() -> bool {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    if target_os != "linux" || target_env != "gnu" || !native {
        return false;
    }
    glibc_version().is_some_and(|version| version >= (2, 36))
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
