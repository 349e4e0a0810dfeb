//! The house rules that are about the code itself, read from `src/`: no function
//! outside tests over 80 lines, and no circle among the top-level modules' imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Every source file of the crate with its text, test modules cut off.
fn code() -> Vec<(PathBuf, String)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| !p.ends_with("tests.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            (p.strip_prefix(&src).unwrap().to_path_buf(), code)
        })
        .collect()
}

/// The name of the function a line opens, if it opens one.
fn opens_fn(line: &str) -> Option<&str> {
    let mut words = line
        .split_whitespace()
        .skip_while(|w| w.starts_with("pub") || matches!(*w, "async" | "unsafe" | "const"));
    (words.next() == Some("fn")).then(|| words.next())?
}

#[test]
fn no_function_outside_tests_is_over_80_lines() {
    let mut long = Vec::new();
    for (path, code) in code() {
        let lines: Vec<&str> = code.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let Some(name) = opens_fn(lines[i]) else {
                i += 1;
                continue;
            };
            let (mut depth, mut opened, mut end) = (0i32, false, i);
            for (j, line) in lines.iter().enumerate().skip(i) {
                if !opened && line.trim_end().ends_with(';') {
                    break; // a declaration without a body
                }
                depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
                opened |= line.contains('{');
                end = j;
                if opened && depth <= 0 {
                    break;
                }
            }
            let length = end - i + 1;
            if opened && length > 80 {
                long.push(format!("{}: {name} ({length} lines)", path.display()));
            }
            i = end + 1;
        }
    }
    assert!(long.is_empty(), "functions over 80 lines: {long:#?}");
}

#[test]
fn the_top_level_modules_import_each_other_without_a_circle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in code() {
        let top = path.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        // Doc links (`[`crate::app::X`]`) are not imports.
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                edges.entry(top.clone()).or_default().insert(name);
            }
        }
    }
    // A depth-first walk: reaching a module already on the path is a circle.
    fn walk(
        at: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == at) {
            return Some(path[start..].to_vec());
        }
        if !done.insert(at.to_string()) {
            return None;
        }
        path.push(at.to_string());
        for next in edges.get(at).into_iter().flatten() {
            if let Some(circle) = walk(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        let circle = walk(module, &edges, &mut Vec::new(), &mut done);
        assert!(circle.is_none(), "an import circle: {circle:?}");
    }
    assert!(edges.len() >= 15, "the modules were read: {edges:?}");
}
