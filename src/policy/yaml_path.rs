//! Best-effort YAML path (`webhooks[0].url`) for a line of block-style YAML.
//! The parser reports where a syntax or type error is but not the path to it;
//! admins navigate by path, so we rebuild it from indentation. Flow-style
//! collections (`{ a: 1 }` on one line) resolve to the key that holds them.

/// The indentation of a line's list dash and of its mapping key, if any.
struct LineShape<'a> {
    dash: Option<usize>,
    key: Option<(usize, &'a str)>,
    blank: bool,
}

fn shape(line: &str) -> LineShape<'_> {
    let trimmed = line.trim_start_matches(' ');
    let mut indent = line.len() - trimmed.len();
    let mut rest = trimmed;
    if rest.is_empty() || rest.starts_with('#') {
        return LineShape {
            dash: None,
            key: None,
            blank: true,
        };
    }
    let mut dash = None;
    if rest == "-" || rest.starts_with("- ") {
        dash = Some(indent);
        let after = rest[1..].trim_start_matches(' ');
        indent += rest.len() - after.len();
        rest = after;
    }
    let key = rest.find(':').and_then(|pos| {
        let k = &rest[..pos];
        let plain = !k.is_empty()
            && !k.starts_with(['{', '[', '"', '\'', '#'])
            && !k.contains(' ')
            && rest[pos + 1..].chars().next().is_none_or(|c| c == ' ');
        plain.then_some((indent, k))
    });
    LineShape {
        dash,
        key,
        blank: false,
    }
}

/// The path of the node on 1-based `line`, or "" when it cannot be told.
pub(crate) fn path_at(text: &str, line: u64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
        return String::new();
    };
    let Some(first) = lines.get(start) else {
        return String::new();
    };
    let here = shape(first);
    let mut segments: Vec<String> = Vec::new();
    // Column of the innermost node found so far; parents sit left of it.
    let mut col = match (here.key, here.dash) {
        (Some((k, name)), _) => {
            segments.push(name.to_owned());
            k
        }
        (None, Some(d)) => d + 1,
        (None, None) => first.len() - first.trim_start().len(),
    };
    if let (Some(d), Some(_)) = (here.dash, here.key) {
        // The error line opens a list item: its index is the parent segment.
        segments.push(format!("[{}]", count_items_above(&lines, start, d)));
        col = d;
    }
    let mut i = start;
    while i > 0 {
        i -= 1;
        let s = shape(lines[i]);
        if s.blank {
            continue;
        }
        if let Some(d) = s.dash.filter(|&d| d < col) {
            segments.push(format!("[{}]", count_items_above(&lines, i, d)));
            col = d;
            if let Some((k, name)) = s.key.filter(|&(k, _)| k < col) {
                segments.push(name.to_owned());
                col = k;
            }
        } else if let Some((k, name)) = s.key.filter(|&(k, _)| k < col) {
            segments.push(name.to_owned());
            col = k;
        }
        if col == 0 {
            break;
        }
    }
    segments.reverse();
    let mut out = String::new();
    for s in segments {
        if !out.is_empty() && !s.starts_with('[') {
            out.push('.');
        }
        out.push_str(&s);
    }
    out
}

/// Index of the list item whose dash is on line `at` (column `dash`).
fn count_items_above(lines: &[&str], at: usize, dash: usize) -> usize {
    let mut n = 0;
    for line in lines[..at].iter().rev() {
        let s = shape(line);
        if s.blank {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        if s.dash == Some(dash) {
            n += 1;
        } else if indent < dash || (indent == dash && s.dash.is_none()) {
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::path_at;

    const DOC: &str = "version: 1\nwebhooks:\n  - id: a\n    url: x\n\n  - id: b\n    urll: y\n    retry:\n      max_attempts: 0\ninbound:\n  actions:\n    approve: { roles: [] }\n";

    #[test]
    fn rebuilds_paths_from_indentation() {
        assert_eq!(path_at(DOC, 1), "version");
        assert_eq!(path_at(DOC, 3), "webhooks[0].id");
        assert_eq!(path_at(DOC, 4), "webhooks[0].url");
        assert_eq!(path_at(DOC, 7), "webhooks[1].urll");
        assert_eq!(path_at(DOC, 9), "webhooks[1].retry.max_attempts");
        assert_eq!(path_at(DOC, 12), "inbound.actions.approve");
    }

    #[test]
    fn out_of_range_lines_give_no_path() {
        assert_eq!(path_at(DOC, 0), "");
        assert_eq!(path_at(DOC, 99), "");
        assert_eq!(path_at("", 1), "");
    }
}
