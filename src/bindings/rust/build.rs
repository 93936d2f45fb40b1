// Links libkvtier.so: from KVTIER_LIB_DIR when set (a build tree or an
// install prefix's lib directory, also baked in as an rpath), else from
// the linker's default paths.
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=KVTIER_LIB_DIR");
    if let Ok(dir) = env::var("KVTIER_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
    println!("cargo:rustc-link-lib=dylib=kvtier");
}
