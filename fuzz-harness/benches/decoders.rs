//! The decoders of outside input over many inputs each (default 1,000,000): random
//! bytes and mutated valid samples, from a fixed seed. A panic fails the run; the
//! counts and rates are printed. `cargo bench --bench decoders -- --cases N`.

use std::time::Instant;

use lvsdr_fuzz_harness::{self as fuzz, Rng};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cases: u64 = args
        .iter()
        .position(|a| a == "--cases")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    println!("| decoder | inputs | time | inputs/s |");
    println!("| --- | --- | --- | --- |");
    for (name, decode, sample) in fuzz::all() {
        let n = cases;
        let mut rng = Rng::new(0x5eed ^ name.len() as u64);
        let t0 = Instant::now();
        for _ in 0..n {
            decode(&rng.input(&sample));
        }
        let s = t0.elapsed().as_secs_f64();
        println!("| {name} | {n} | {s:.1} s | {:.0} |", n as f64 / s);
    }
}
