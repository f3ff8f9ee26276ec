//! Column-aligned tables like podman's (three spaces between columns).

use std::io::Write;

pub fn print(out: &mut impl Write, head: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(w.len()) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                s.push_str("   ");
            }
            s.push_str(c);
            let pad = w
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.chars().count());
            s.extend(std::iter::repeat_n(' ', pad));
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut head.iter().copied()))?;
    for r in rows {
        writeln!(out, "{}", line(&mut r.iter().map(String::as_str)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligned() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["abc".to_string(), "x".to_string()],
            vec!["d".to_string(), "".to_string()],
        ];
        super::print(&mut out, &["ID", "NAME"], &rows).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "ID    NAME\nabc   x\nd\n");
    }
}
