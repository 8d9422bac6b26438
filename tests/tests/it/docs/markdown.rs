//! The parts of a Markdown file the documentation tests read: fenced
//! blocks (with their info string: language, then markers), table rows
//! (cells split on unescaped `|`, then `\|` unescaped, as GitHub does), and
//! inline code spans in tables and in prose.

use std::path::{Path, PathBuf};

/// One documentation file.
pub(super) struct Doc {
    /// Its path from the workspace root, for messages.
    pub(super) path: String,
    /// Its folder, where relative paths in it resolve.
    pub(super) dir: PathBuf,
    pub(super) text: String,
}

/// Folders that hold no documentation of ours (build output, installed
/// tools, generated results, fuzzing data).
const SKIPPED: [&str; 6] = [
    "target",
    "node_modules",
    "bench/results",
    "fuzz/corpus",
    "fuzz/artifacts",
    "fuzz/target",
];

/// Every `*.md` file of the workspace.
pub(super) fn all(root: &Path) -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            let relative = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .into_owned();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.')
                || SKIPPED.contains(&relative.as_str())
                || SKIPPED.contains(&name.as_str())
            {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else if name.ends_with(".md") {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
                let dir = path.parent().expect("a folder").to_path_buf();
                docs.push(Doc {
                    path: relative,
                    dir,
                    text,
                });
            }
        }
    }
    docs.sort_by(|a, b| a.path.cmp(&b.path));
    docs
}

/// A fenced code block.
pub(super) struct Fence {
    /// The line of its opening fence (from 1).
    pub(super) line: usize,
    /// The first word of the info string (`toml`, `sh`, ...).
    pub(super) lang: String,
    /// The other words of the info string.
    pub(super) markers: Vec<String>,
    /// Its text, without the fence's indentation.
    pub(super) body: String,
}

/// What a line is, outside or inside fenced blocks.
enum Line<'a> {
    Text(usize, &'a str),
    Fence(Fence),
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, usize, String, Vec<String>)> = None; // line, fence, indent, lang, markers
    let mut body = String::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &open {
            None => {
                let fence: String = trimmed.chars().take_while(|c| *c == '`' || *c == '~').collect();
                if fence.len() >= 3 && fence.chars().all(|c| c == fence.chars().next().unwrap_or('`')) {
                    let mut info = trimmed[fence.len()..].split_whitespace().map(str::to_owned);
                    let lang = info.next().unwrap_or_default();
                    open = Some((index + 1, fence, indent, lang, info.collect()));
                    body.clear();
                } else {
                    out.push(Line::Text(index + 1, line));
                }
            }
            Some((start, fence, fence_indent, lang, markers)) => {
                if trimmed.starts_with(fence.as_str())
                    && trimmed
                        .trim_start_matches(fence.chars().next().unwrap_or('`'))
                        .trim()
                        .is_empty()
                {
                    out.push(Line::Fence(Fence {
                        line: *start,
                        lang: lang.clone(),
                        markers: markers.clone(),
                        body: std::mem::take(&mut body),
                    }));
                    open = None;
                } else {
                    let strip = indent.min(*fence_indent);
                    body.push_str(&line[strip..]);
                    body.push('\n');
                }
            }
        }
    }
    out
}

/// The fenced blocks of `text`.
pub(super) fn fences(text: &str) -> Vec<Fence> {
    lines(text)
        .into_iter()
        .filter_map(|l| match l {
            Line::Fence(f) => Some(f),
            Line::Text(..) => None,
        })
        .collect()
}

/// A table row outside fenced blocks: its line and its cells.
pub(super) struct Row {
    pub(super) line: usize,
    pub(super) cells: Vec<String>,
}

/// The table rows of `text` (separator rows left out).
pub(super) fn rows(text: &str) -> Vec<Row> {
    lines(text)
        .into_iter()
        .filter_map(|l| match l {
            Line::Text(line, text) if text.trim_start().starts_with('|') => Some((line, text.trim())),
            _ => None,
        })
        .filter(|(_, text)| !text.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')))
        .map(|(line, text)| Row {
            line,
            cells: cells(text),
        })
        .collect()
}

/// Splits a row on unescaped `|` (even inside code spans, as GitHub does),
/// then unescapes `\|`.
fn cells(row: &str) -> Vec<String> {
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = row
        .strip_suffix('|')
        .filter(|r| !r.ends_with('\\'))
        .unwrap_or(row);
    let mut cells = vec![String::new()];
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().expect("a cell").push('|');
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().expect("a cell").push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// The inline code spans of `text` (CommonMark: a run of N backticks up to
/// the next run of exactly N; line breaks inside read as spaces; one space
/// each side stripped when both are there).
pub(super) fn code_spans(text: &str) -> Vec<(usize, String)> {
    let bytes: Vec<char> = text.chars().collect();
    let mut spans = Vec::new();
    let mut line = 0;
    let mut i = 0;
    let run_at = |i: usize| bytes[i..].iter().take_while(|c| **c == '`').count();
    while i < bytes.len() {
        if bytes[i] == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if bytes[i] != '`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let start = i + n;
        let mut j = start;
        let mut end = None;
        while j < bytes.len() {
            if bytes[j] == '`' {
                let m = run_at(j);
                if m == n {
                    end = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match end {
            Some(end) => {
                let content: String = bytes[start..end]
                    .iter()
                    .map(|c| if *c == '\n' { ' ' } else { *c })
                    .collect();
                let content = match content.strip_prefix(' ').and_then(|c| c.strip_suffix(' ')) {
                    Some(inner) if !inner.trim().is_empty() => inner.to_owned(),
                    _ => content,
                };
                spans.push((line, content));
                line += bytes[i..end].iter().filter(|c| **c == '\n').count();
                i = end + n;
            }
            None => i = start,
        }
    }
    spans
}

/// The inline code spans of the prose of `text` (outside fenced blocks and
/// tables), with their lines.
pub(super) fn prose_spans(text: &str) -> Vec<(usize, String)> {
    // Paragraphs of consecutive prose lines, so that spans may cross lines.
    let mut spans = Vec::new();
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    let mut flush = |paragraph: &mut Vec<(usize, &str)>| {
        if let Some((first, _)) = paragraph.first() {
            let joined = paragraph.iter().map(|(_, l)| *l).collect::<Vec<_>>().join("\n");
            spans.extend(
                code_spans(&joined)
                    .into_iter()
                    .map(|(offset, span)| (first + offset, span)),
            );
        }
        paragraph.clear();
    };
    for line in lines(text) {
        match line {
            Line::Text(n, text) if !text.trim_start().starts_with('|') && !text.trim().is_empty() => {
                paragraph.push((n, text));
            }
            _ => flush(&mut paragraph),
        }
    }
    flush(&mut paragraph);
    spans
}
