//! Documented command lines as words: enough of the shell's syntax for the
//! docs' `sh` blocks (quotes, `\` line continuations and escapes, comments,
//! `$(...)`, redirections, `|`, `&&`, `||`, `;`, `&`), and the usage
//! notation of the docs' synopses, docopt-style: `[optional]`,
//! `(one | other)`, `one|other` inside a word, and `...` standing for more.
//!
//! In a shell block a `|` between words at the top level is a pipe; inside
//! `[...]` or `(...)`, and anywhere in a table's synopsis, it separates
//! alternatives.

/// One token of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    /// A word, quotes removed; `quoted` if any of it was quoted (then a `|`
    /// in it is not an alternative).
    Word { text: String, quoted: bool },
    /// `[` (optional) or `(` (a group).
    Open(char),
    /// `]` or `)`.
    Close(char),
    /// `|` between alternatives.
    Alt,
}

impl Tok {
    pub(super) fn word(&self) -> Option<&str> {
        match self {
            Tok::Word { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// What the text is: a shell block's logical line, or a synopsis.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Shell,
    Synopsis,
}

/// A shell block's logical lines: `\`-continued lines joined.
pub(super) fn logical_lines(body: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in body.lines().enumerate() {
        let (start, mut text) = current.take().unwrap_or((index, String::new()));
        match line.trim_end().strip_suffix('\\') {
            Some(continued) => {
                text.push_str(continued);
                text.push(' ');
                current = Some((start, text));
            }
            None => {
                text.push_str(line);
                out.push((start, text));
            }
        }
    }
    out.extend(current);
    out
}

/// The simple commands of `text` (each a list of tokens), and the texts of
/// the `$(...)` substitutions found in it (commands of their own).
pub(super) fn commands(text: &str, mode: Mode) -> Result<(Vec<Vec<Tok>>, Vec<String>), String> {
    let chars: Vec<char> = text.chars().collect();
    let mut commands = vec![Vec::new()];
    let mut substitutions = Vec::new();
    let mut depth: Vec<char> = Vec::new();
    let mut i = 0;
    let end_command = |commands: &mut Vec<Vec<Tok>>| {
        if commands.last().is_some_and(|c| !c.is_empty()) {
            commands.push(Vec::new());
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // Between words.
        match c {
            '#' if mode == Mode::Shell => break,
            '[' | '(' => {
                depth.push(c);
                commands.last_mut().expect("a command").push(Tok::Open(c));
                i += 1;
                continue;
            }
            ']' | ')' if !depth.is_empty() => {
                close(&mut depth, c)?;
                commands.last_mut().expect("a command").push(Tok::Close(c));
                i += 1;
                continue;
            }
            '|' if chars.get(i + 1) == Some(&'|') && mode == Mode::Shell => {
                end_command(&mut commands);
                i += 2;
                continue;
            }
            '|' if mode == Mode::Shell && depth.is_empty() => {
                end_command(&mut commands);
                i += 1;
                continue;
            }
            '|' => {
                commands.last_mut().expect("a command").push(Tok::Alt);
                i += 1;
                continue;
            }
            ';' | '&' if mode == Mode::Shell => {
                end_command(&mut commands);
                i += if chars.get(i + 1) == Some(&'&') { 2 } else { 1 };
                continue;
            }
            _ => {}
        }
        // A redirection (`>f`, `2>&1`, `< f`): not an argument.
        if mode == Mode::Shell {
            let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if matches!(chars.get(i + digits), Some('>' | '<')) {
                i += digits;
                while matches!(chars.get(i), Some('>' | '<' | '&')) {
                    i += 1;
                }
                // The target, attached or the next word.
                while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                    i += 1;
                }
                let (_, next) = word(&chars, i, mode, &mut depth, &mut substitutions)?;
                i = next;
                continue;
            }
        }
        let (tokens, next) = word(&chars, i, mode, &mut depth, &mut substitutions)?;
        commands.last_mut().expect("a command").extend(tokens);
        i = next;
    }
    if let Some(open) = depth.last() {
        return Err(format!("unclosed {open:?}"));
    }
    commands.retain(|c| !c.is_empty());
    Ok((commands, substitutions))
}

fn close(depth: &mut Vec<char>, c: char) -> Result<(), String> {
    match (depth.pop(), c) {
        (Some('['), ']') | (Some('('), ')') => Ok(()),
        (open, c) => Err(format!("{c:?} closes {open:?}")),
    }
}

/// One word from `i`, and the closers right after it; returns the tokens
/// and the index after them.
fn word(
    chars: &[char],
    mut i: usize,
    mode: Mode,
    depth: &mut Vec<char>,
    substitutions: &mut Vec<String>,
) -> Result<(Vec<Tok>, usize), String> {
    let mut text = String::new();
    let mut quoted = false;
    // Brackets opened inside the word (`UID[:GID]`) belong to it.
    let mut inner = 0usize;
    let mut closers = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            break;
        }
        match c {
            '\'' if mode == Mode::Shell => {
                quoted = true;
                let end = chars[i + 1..]
                    .iter()
                    .position(|c| *c == '\'')
                    .ok_or("unclosed '")?;
                text.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            }
            '"' if mode == Mode::Shell => {
                quoted = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unclosed \"".into()),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if chars.get(i + 1).is_some() => {
                            text.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('$') if chars.get(i + 1) == Some(&'(') => {
                            i = substitution(chars, i, substitutions)?;
                            text.push_str("VALUE");
                        }
                        Some(c) => {
                            text.push(*c);
                            i += 1;
                        }
                    }
                }
            }
            '\\' if mode == Mode::Shell && i + 1 < chars.len() => {
                quoted = true;
                text.push(chars[i + 1]);
                i += 2;
            }
            '$' if mode == Mode::Shell && chars.get(i + 1) == Some(&'(') => {
                i = substitution(chars, i, substitutions)?;
                text.push_str("VALUE");
            }
            ';' | '&' if mode == Mode::Shell => break,
            '|' if mode == Mode::Shell && depth.is_empty() => break,
            '[' | '(' => {
                inner += 1;
                text.push(c);
                i += 1;
            }
            ']' | ')' if inner > 0 => {
                inner -= 1;
                text.push(c);
                i += 1;
            }
            ']' | ')' if !depth.is_empty() => {
                close(depth, c)?;
                closers.push(Tok::Close(c));
                i += 1;
                // Only closers (or the end of the word) may follow.
                while let Some(c @ (']' | ')')) = chars.get(i).copied() {
                    close(depth, c)?;
                    closers.push(Tok::Close(c));
                    i += 1;
                }
                break;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    let mut tokens = Vec::new();
    if !text.is_empty() || quoted {
        tokens.push(Tok::Word { text, quoted });
    }
    tokens.extend(closers);
    Ok((tokens, i))
}

/// `$(...)` at `i`: records its text, returns the index after it.
fn substitution(chars: &[char], i: usize, substitutions: &mut Vec<String>) -> Result<usize, String> {
    let mut level = 0;
    let mut j = i + 1;
    let mut quote: Option<char> = None;
    while j < chars.len() {
        let c = chars[j];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => level += 1,
            (None, ')') => {
                level -= 1;
                if level == 0 {
                    substitutions.push(chars[i + 2..j].iter().collect());
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err("unclosed $(".into())
}

/// The command lines a synopsis stands for: every choice of its optional
/// parts and alternatives (at most `limit`), each with whether it had a
/// `...` (more arguments left out).
pub(super) fn expand(tokens: &[Tok], limit: usize) -> Result<Vec<(Vec<String>, bool)>, String> {
    let mut at = 0;
    let alternatives = sequence(tokens, &mut at)?;
    if at != tokens.len() {
        return Err(format!("unbalanced {:?}", tokens[at]));
    }
    let mut out = Vec::new();
    for alternative in alternatives {
        for words in expand_seq(&alternative, limit)? {
            let elided = words.iter().any(|w| w == "...");
            out.push((words.into_iter().filter(|w| w != "...").collect(), elided));
            if out.len() > limit {
                return Err(format!("more than {limit} command lines: write it as several"));
            }
        }
    }
    Ok(out)
}

/// A parsed synopsis: a word (with its alternatives) or a group.
#[derive(Debug)]
enum Node {
    Word(Vec<String>),
    Group {
        optional: bool,
        alternatives: Vec<Vec<Node>>,
    },
}

/// Alternatives of sequences, up to a closer or the end.
fn sequence(tokens: &[Tok], at: &mut usize) -> Result<Vec<Vec<Node>>, String> {
    let mut alternatives = vec![Vec::new()];
    while let Some(token) = tokens.get(*at) {
        match token {
            Tok::Close(_) => break,
            Tok::Alt => {
                alternatives.push(Vec::new());
                *at += 1;
            }
            Tok::Word { text, quoted } => {
                let words = if *quoted || text == "|" {
                    vec![text.clone()]
                } else {
                    text.split('|').map(str::to_owned).collect()
                };
                alternatives.last_mut().expect("one").push(Node::Word(words));
                *at += 1;
            }
            Tok::Open(kind) => {
                *at += 1;
                let inner = sequence(tokens, at)?;
                let close = if *kind == '[' { ']' } else { ')' };
                if tokens.get(*at) != Some(&Tok::Close(close)) {
                    return Err(format!("{kind:?} is not closed by {close:?}"));
                }
                *at += 1;
                alternatives.last_mut().expect("one").push(Node::Group {
                    optional: *kind == '[',
                    alternatives: inner,
                });
            }
        }
    }
    Ok(alternatives)
}

fn expand_seq(nodes: &[Node], limit: usize) -> Result<Vec<Vec<String>>, String> {
    let mut lines: Vec<Vec<String>> = vec![Vec::new()];
    for node in nodes {
        let choices: Vec<Vec<String>> = match node {
            Node::Word(words) => words.iter().map(|w| vec![w.clone()]).collect(),
            Node::Group {
                optional,
                alternatives,
            } => {
                let mut choices = Vec::new();
                if *optional {
                    choices.push(Vec::new());
                }
                for alternative in alternatives {
                    choices.extend(expand_seq(alternative, limit)?);
                }
                choices
            }
        };
        let mut next = Vec::new();
        for line in &lines {
            for choice in &choices {
                next.push(line.iter().chain(choice).cloned().collect());
                if next.len() > limit {
                    return Err(format!("more than {limit} command lines: write it as several"));
                }
            }
        }
        lines = next;
    }
    Ok(lines)
}
