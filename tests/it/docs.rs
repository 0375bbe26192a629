//! The documentation stays true to the code and to itself (issue 28,
//! item 7): every relative link of the book and the README reaches a file
//! and, with `#anchor`, a heading (mdBook's ids); every page is in
//! `SUMMARY.md`; every `AION_WEBHOOKS_*` variable the code reads is in the
//! configuration reference; every route is in the HTTP API reference; the
//! README stays short and starts with its two commands. (`mdbook build
//! docs` in CI renders it.)

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// The text outside fenced code blocks and inline code.
fn prose(text: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if !fenced {
            let mut inline = false;
            for c in line.chars() {
                if c == '`' {
                    inline = !inline;
                } else if !inline {
                    out.push(c);
                }
            }
        }
        out.push('\n');
    }
    out
}

/// mdBook's heading ids: lowercase, spaces to `-`, other punctuation gone,
/// `-1`, `-2` … for repeats.
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut ids = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if fenced || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let mut title = line[hashes..]
            .trim()
            .trim_end_matches('#')
            .trim()
            .to_owned();
        // A link in a heading counts by its text.
        while let (Some(open), Some(mid)) = (title.find('['), title.find("](")) {
            let Some(close) = title[mid..].find(')').map(|c| c + mid) else {
                break;
            };
            if open > mid {
                break;
            }
            title = format!(
                "{}{}{}",
                &title[..open],
                &title[open + 1..mid],
                &title[close + 1..]
            );
        }
        let base: String = title
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    Some(c.to_lowercase().next().unwrap_or(c))
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let n = seen.entry(base.clone()).or_insert(0);
        ids.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    ids
}

/// `(target)` of every `[text](target)` in `text`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let tail = &rest[at + 2..];
        let end = tail.find([')', ' ', '\n']).unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_relative_link_of_the_book_and_the_readme_resolves() {
    let src = root().join("docs/src");
    let mut pages = Vec::new();
    files_under(&src, "md", &mut pages);
    assert!(pages.len() > 20, "the book has its pages: {pages:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages.iter().chain([&root().join("README.md")]) {
        let text = std::fs::read_to_string(page).expect("page");
        for target in links(&prose(&text)) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().expect("dir").join(path)
            };
            let Ok(file) = std::fs::canonicalize(&file) else {
                broken.push(format!("{}: {target}: no such file", page.display()));
                continue;
            };
            if !anchor.is_empty() {
                let ids = heading_ids(&std::fs::read_to_string(&file).unwrap_or_default());
                if !ids.contains(anchor) {
                    broken.push(format!("{}: {target}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(checked > 50, "{checked} links checked");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));

    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).expect("SUMMARY.md");
    let listed: BTreeSet<PathBuf> = links(&summary)
        .iter()
        .map(|l| {
            std::fs::canonicalize(src.join(l))
                .unwrap_or_else(|_| panic!("SUMMARY.md lists {l}, which does not exist"))
        })
        .collect();
    for page in &pages {
        let page = std::fs::canonicalize(page).expect("page");
        assert!(
            page.ends_with("SUMMARY.md") || listed.contains(&page),
            "{} is not in SUMMARY.md",
            page.display()
        );
    }
}

#[test]
fn every_variable_the_engine_reads_is_in_the_configuration_reference() {
    let mut sources = Vec::new();
    files_under(&root().join("src"), "rs", &mut sources);
    let mut names = BTreeSet::new();
    for file in sources {
        let text = std::fs::read_to_string(&file).expect("source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("AION_WEBHOOKS_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            if !tail[..end].ends_with('_') {
                names.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    assert!(names.len() > 15, "{names:?}");
    let reference = std::fs::read_to_string(root().join("docs/src/reference/configuration.md"))
        .expect("configuration.md");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !reference.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/src/reference/configuration.md: {missing:?}"
    );
}

/// Every path the router serves, read from `src/http/mod.rs`.
fn routed_paths() -> Vec<String> {
    routed_paths_in("src/http/mod.rs")
}

/// Every path routed in `file`.
fn routed_paths_in(file: &str) -> Vec<String> {
    let routes = std::fs::read_to_string(root().join(file)).expect("routes");
    routes
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            line.strip_prefix(".route(\"")
                .or_else(|| line.strip_prefix('"').filter(|_| line.ends_with("\",")))
                .and_then(|l| l.split('"').next())
                .filter(|p| p.starts_with('/'))
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn every_console_page_is_in_the_console_guide() {
    let guide =
        std::fs::read_to_string(root().join("docs/src/operations/console.md")).expect("console.md");
    let routes = routed_paths_in("src/http/console/mod.rs");
    assert!(routes.len() > 15, "{} routes found", routes.len());
    let missing: Vec<&String> = routes
        .iter()
        .filter(|p| !p.contains("/static/") && p.as_str() != "/console/")
        .filter(|p| !guide.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "console pages not in docs/src/operations/console.md: {missing:?}"
    );
}

#[test]
fn every_route_is_in_the_http_api_reference() {
    let reference = std::fs::read_to_string(root().join("docs/src/reference/http-api.md"))
        .expect("http-api.md");
    let routes = routed_paths();
    assert!(routes.len() > 15, "{} routes found", routes.len());
    // The reference writes `{id}` paths with their query strings.
    let missing: Vec<&String> = routes
        .iter()
        .filter(|p| !reference.contains(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes not in docs/src/reference/http-api.md: {missing:?}"
    );
}

#[test]
fn the_readme_is_short_and_starts_with_its_two_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        readme.lines().count() <= 200,
        "README.md has {} lines",
        readme.lines().count()
    );
    let first_block = readme
        .split("```")
        .nth(1)
        .expect("a fenced block")
        .trim()
        .lines()
        .collect::<Vec<_>>();
    assert_eq!(
        first_block.len(),
        2,
        "exactly two commands: {first_block:?}"
    );
    assert!(
        first_block[0].starts_with("cargo run --release -- serve"),
        "{first_block:?}"
    );
}

#[test]
fn every_route_is_in_the_openapi_description() {
    let document: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/openapi.json")).expect("docs/openapi.json"),
    )
    .expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    let routes = routed_paths();
    for path in &routes {
        assert!(
            paths.contains_key(path),
            "{path} is routed but not described in docs/openapi.json"
        );
    }
    assert_eq!(
        routes.len(),
        paths.len(),
        "docs/openapi.json describes a path that is not routed"
    );
}

#[tokio::test]
async fn the_engine_serves_the_committed_openapi_description_without_credentials() {
    let app = crate::support::TestApp::spawn(
        crate::db::TestDb::sqlite().await,
        &crate::support::policy_yaml(&crate::support::hook(
            "h",
            "http://127.0.0.1:9/",
            "[a.b]",
            "",
        )),
    )
    .await;
    let r = reqwest::get(format!("{}/v1/openapi.json", app.base))
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served = r.text().await.expect("text");
    let committed = std::fs::read_to_string(root().join("docs/openapi.json")).expect("committed");
    assert!(
        served == committed,
        "the served description is not docs/openapi.json"
    );
    app.stop().await;
}
