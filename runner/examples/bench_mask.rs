//! Throughput of the log masker (`runner::mask`) on generated build-log text read in 32 KiB
//! chunks, with no secret, one and twenty, beside copying the same bytes. Run:
//! `cargo run --release -p moat-runner --example bench_mask [-- --size-mb N]`.

use std::time::Instant;

use moat_runner::mask::Masker;

fn log_text(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 200);
    let mut n: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0u64;
    while out.len() < size {
        n ^= n << 13;
        n ^= n >> 7;
        n ^= n << 17;
        i += 1;
        let line = match n % 6 {
            0 => format!(
                "\x1b[1;32m   Compiling\x1b[0m crate-{i} v0.{}.{}\n",
                n % 9,
                n % 13
            ),
            1 => format!("test module{}::case_{i} ... ok\n", n % 50),
            2 => format!("[{:>3}%] building object {i:08x}.o\r", n % 100),
            3 => format!("    {:064x}\n", (n as u128) * (i as u128)),
            4 => format!("INFO request id={n:016x} path=/api/v1/items/{i} status=200\n"),
            _ => format!(
                "{}\n",
                "lorem ipsum dolor sit amet ".repeat(1 + (n % 4) as usize)
            ),
        };
        out.extend_from_slice(line.as_bytes());
    }
    out
}

fn time(label: &str, text: &[u8], f: impl Fn(&[u8]) -> usize) {
    let start = Instant::now();
    let n = std::hint::black_box(f(std::hint::black_box(text)));
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<24} {:>8.1} MB/s  ({n} bytes out)",
        text.len() as f64 / 1e6 / secs
    );
}

fn main() {
    let mut size_mb = 100usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size-mb" => size_mb = args.next().and_then(|v| v.parse().ok()).unwrap_or(size_mb),
            _ => {
                eprintln!("usage: bench_mask [--size-mb N]");
                std::process::exit(2);
            }
        }
    }
    let text = log_text(size_mb << 20);
    time("copy (baseline)", &text, |t| {
        t.chunks(32 << 10)
            .map(|c| std::hint::black_box(c.to_vec()).len())
            .sum()
    });
    let secrets: Vec<String> = (0..20)
        .map(|i| format!("s3cr3t-value-{i}-Zx9/+Qw8Er7Ty6Ui5Op4"))
        .collect();
    for (label, n) in [
        ("masker, no secret", 0),
        ("masker, 1 secret", 1),
        ("masker, 20 secrets", 20),
    ] {
        let m = Masker::new(&secrets[..n]);
        time(label, &text, |t| {
            let mut s = m.stream();
            let mut out = 0;
            for c in t.chunks(32 << 10) {
                out += s.push(c).len();
            }
            out + s.finish().len()
        });
    }
}
