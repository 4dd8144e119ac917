//! Whatever the bytes, the spec loader answers with a value or an error — never a panic.

use std::path::Path;

use crate::common::EXAMPLE;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"{}[]:,-&*!|>'\"#%@`? \n\t abc123.\\/";
    for _ in 0..3000 {
        let length = rng.below(200);
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                }
            })
            .collect();
        let _ = pwless::spec::parse_bytes(Path::new("fuzz.yaml"), &bytes);
    }
}

#[test]
fn mutated_examples_never_panic_and_errors_point_inside_the_file() {
    let mut rng = Rng(42);
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for _ in 0..2000 {
        let mut mutated: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
        for _ in 0..=rng.below(3) {
            let index = rng.below(mutated.len());
            match rng.below(5) {
                0 => {
                    mutated.remove(index);
                }
                1 => {
                    let copy = mutated[index].clone();
                    mutated.insert(rng.below(mutated.len()), copy);
                }
                2 => mutated[index] = format!("  {}", mutated[index]),
                3 => {
                    let line = &mutated[index];
                    let cut = rng.below(line.len() + 1);
                    if line.is_char_boundary(cut) {
                        mutated[index] = line[..cut].to_string();
                    }
                }
                _ => mutated[index]
                    .push_str(["\"", "]", "}", ": x", " &a", " *a", "\u{feff}"][rng.below(7)]),
            }
        }
        let text = mutated.join("\n");
        if let Err(errors) = pwless::spec::parse_str(Path::new("m.yaml"), &text) {
            assert!(!errors.diagnostics.is_empty());
            for diagnostic in &errors.diagnostics {
                let line = diagnostic.span.start.line;
                assert!(
                    line >= 1 && line <= mutated.len() + 1,
                    "line {line} outside the file:\n{text}"
                );
            }
            let _ = errors.render();
        }
    }
}
