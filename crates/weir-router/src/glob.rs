//! Model-name globs: `*` matches any run of characters, `?` one character.

/// Whether `s` is a pattern (holds `*` or `?`), not a plain name.
pub(crate) fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Whether `name` matches `pattern`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with backtracking to the last `*`: linear for model names.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("claude-*", "claude-sonnet-4-5"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("gpt-4?", "gpt-4o"));
        assert!(glob_match("*-mini", "o4-mini"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("claude-*", "gpt-4o"));
        assert!(!glob_match("gpt-4?", "gpt-4"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }
}
