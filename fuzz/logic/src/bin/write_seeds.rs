//! Writes the built-in seeds of every fuzz target to `<dir>/<target>/seed-N`, the
//! starting corpus for `cargo fuzz run <target> <dir>/<target>`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    for (name, _) in hv_fuzz_logic::TARGETS {
        let d = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&d)?;
        for (i, s) in hv_fuzz_logic::seeds::builtin(name).iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), s)?;
        }
        println!(
            "{}: wrote {} seeds",
            d.display(),
            hv_fuzz_logic::seeds::builtin(name).len()
        );
    }
    Ok(())
}
