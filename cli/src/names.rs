//! Generated container names, `adjective_scientist` like Docker's.

const ADJECTIVES: [&str; 40] = [
    "admiring",
    "amazing",
    "blissful",
    "bold",
    "brave",
    "busy",
    "calm",
    "clever",
    "cool",
    "dazzling",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "fervent",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "loving",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "zealous",
];

const NAMES: [&str; 40] = [
    "agnesi",
    "babbage",
    "bardeen",
    "bell",
    "bohr",
    "cannon",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "fermat",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "meitner",
    "mirzakhani",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "sinoussi",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "wilson",
    "wozniak",
    "wright",
    "yalow",
];

/// A random `adjective_name`.
pub fn generate() -> String {
    let r = random_u32();
    let a = ADJECTIVES[(r % ADJECTIVES.len() as u32) as usize];
    let n = NAMES[((r >> 16) % NAMES.len() as u32) as usize];
    format!("{a}_{n}")
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into the live buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // No entropy source: the clock still varies between calls.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.subsec_nanos() ^ std::process::id();
    }
    u32::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_look_right() {
        for _ in 0..50 {
            let n = generate();
            let (a, b) = n.split_once('_').unwrap();
            assert!(ADJECTIVES.contains(&a) && NAMES.contains(&b), "{n}");
            crate::containers::check_name(&n).unwrap();
        }
    }
}
