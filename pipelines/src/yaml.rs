//! The only YAML reader in Moat: turns untrusted text into a tree of located nodes.
//!
//! It owns everything YAML-specific so that no other module has to know about anchors, merge
//! keys or scanner quirks: aliases are expanded (under a node budget, so a "billion laughs" file
//! fails fast instead of eating memory), `<<` merge keys are applied, duplicate keys are
//! rejected, and nesting depth is bounded. Every node keeps the position it was written at.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span};

use crate::diag::{Diagnostic, Pos};

/// Bounds that keep a hostile file from costing more than a normal one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most collections open at once.
    pub max_depth: usize,
    /// Most nodes in the tree, counting every copy an alias makes.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_nodes: 100_000,
        }
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `~`, `null`, or nothing at all.
    Null,
    /// `plain` is false for quoted, block (`|`, `>`) and `!!str` scalars: only plain scalars
    /// may be read as numbers or booleans.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order; merged (`<<`) entries keep the position they were written at.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Null)
    }

    /// The text of a scalar node, whatever its style.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The text of a plain (unquoted) scalar, the only kind that can be a number or boolean.
    pub fn as_plain(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, plain: true } => Some(value),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.as_plain()? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under a scalar key, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// What the node is, for messages like "expected a list, found a mapping".
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "null",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
            NodeKind::Scalar { plain: false, .. } => "a string",
            NodeKind::Scalar { value, plain: true } => {
                if self.as_bool().is_some() {
                    "a boolean"
                } else if looks_numeric(value) {
                    "a number"
                } else {
                    "a string"
                }
            }
        }
    }
}

fn looks_numeric(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    matches!(t, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN")
        || (t.starts_with(|c: char| c.is_ascii_digit() || c == '.') && s.parse::<f64>().is_ok())
        || t.strip_prefix("0x")
            .or_else(|| t.strip_prefix("0o"))
            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Reads a stream that must hold exactly one document (a pipeline file, a config file).
pub fn parse_document(src: &str, limits: &Limits) -> Result<Node, Diagnostic> {
    let mut docs = parse_documents(src, limits)?;
    match docs.len() {
        0 => Err(Diagnostic::new(Pos::new(1, 1), "empty pipeline file")),
        1 => Ok(docs.remove(0)),
        _ => Err(Diagnostic::new(
            docs[1].pos,
            "a second YAML document starts here; a pipeline file holds exactly one",
        )),
    }
}

/// Reads every document of a stream (Kubernetes manifests put several in one file). A stream
/// with no document gives an empty list. The limits apply to the whole stream.
pub fn parse_documents(src: &str, limits: &Limits) -> Result<Vec<Node>, Diagnostic> {
    // The parser is third-party code fed untrusted input: a panic in it must become an error
    // about the file, not take the process down.
    match catch_unwind(AssertUnwindSafe(|| Builder::new(src, limits).run())) {
        Ok(result) => result,
        Err(_) => Err(Diagnostic::new(
            Pos::new(1, 1),
            "YAML parser failed on this input",
        )),
    }
}

fn pos_of(m: &Marker) -> Pos {
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Pos::new(clamp(m.line().max(1)), clamp(m.col()).saturating_add(1))
}

/// A finished node with what the limits need to know about it.
struct Built {
    node: Node,
    /// Nodes in the subtree, this one included.
    size: usize,
    /// Collection levels in the subtree (0 for a scalar).
    height: usize,
}

enum Open {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Frame {
    pos: Pos,
    anchor: usize,
    size: usize,
    height: usize,
    open: Open,
}

struct Builder<'a> {
    src: &'a str,
    limits: Limits,
    stack: Vec<Frame>,
    /// Finished anchored nodes by anchor id, with their size and height, so an alias can be
    /// priced before it is copied.
    anchors: HashMap<usize, Built>,
    total: usize,
    docs: Vec<Node>,
    root: Option<Node>,
}

impl<'a> Builder<'a> {
    fn new(src: &'a str, limits: &Limits) -> Self {
        Builder {
            src,
            limits: *limits,
            stack: Vec::new(),
            anchors: HashMap::new(),
            total: 0,
            docs: Vec::new(),
            root: None,
        }
    }

    fn run(mut self) -> Result<Vec<Node>, Diagnostic> {
        let mut parser = Parser::new_from_str(self.src);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| self.scan_error(&e))?;
            let pos = pos_of(&span.start);
            match event {
                Event::StreamEnd => break,
                Event::Nothing | Event::StreamStart | Event::DocumentStart(_) => {}
                Event::DocumentEnd => {
                    if let Some(root) = self.root.take() {
                        self.docs.push(root);
                    }
                }
                Event::Alias(id) => self.alias(id, pos, span)?,
                Event::Scalar(value, style, anchor, tag) => {
                    let core = |name: &str| {
                        tag.as_ref()
                            .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == name)
                    };
                    let (is_str, is_null_tag) = (core("str"), core("null"));
                    let plain = style == ScalarStyle::Plain && !is_str;
                    let kind = if is_null_tag
                        || plain && matches!(&*value, "" | "~" | "null" | "Null" | "NULL")
                    {
                        NodeKind::Null
                    } else {
                        NodeKind::Scalar {
                            value: value.into_owned(),
                            plain,
                        }
                    };
                    self.count(1, pos)?;
                    self.finish(
                        Built {
                            node: Node { pos, kind },
                            size: 1,
                            height: 0,
                        },
                        anchor,
                    )?;
                }
                Event::SequenceStart(anchor, _) => self.open(pos, anchor, Open::Seq(Vec::new()))?,
                Event::MappingStart(anchor, _) => self.open(
                    pos,
                    anchor,
                    Open::Map {
                        entries: Vec::new(),
                        key: None,
                    },
                )?,
                Event::SequenceEnd | Event::MappingEnd => self.close()?,
            }
        }
        if let Some(root) = self.root.take() {
            self.docs.push(root);
        }
        Ok(self.docs)
    }

    fn scan_error(&self, e: &ScanError) -> Diagnostic {
        let pos = pos_of(e.marker());
        if e.info().contains("unknown anchor") {
            let name = self.text_at(e.marker().index());
            return Diagnostic::new(pos, format!("unknown alias \"{name}\""));
        }
        Diagnostic::new(pos, format!("invalid YAML: {}", e.info()))
    }

    /// The alias or anchor token that starts at character `index`, for messages.
    fn text_at(&self, index: usize) -> String {
        self.src
            .chars()
            .skip(index)
            .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}'))
            .take(100)
            .collect()
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), Diagnostic> {
        self.total = self.total.saturating_add(n);
        if self.total > self.limits.max_nodes {
            return Err(Diagnostic::new(
                pos,
                format!("document has more than {} nodes", self.limits.max_nodes),
            ));
        }
        Ok(())
    }

    fn open(&mut self, pos: Pos, anchor: usize, open: Open) -> Result<(), Diagnostic> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(Diagnostic::new(
                pos,
                format!("nesting deeper than {} levels", self.limits.max_depth),
            ));
        }
        self.count(1, pos)?;
        self.stack.push(Frame {
            pos,
            anchor,
            size: 1,
            height: 1,
            open,
        });
        Ok(())
    }

    fn alias(&mut self, id: usize, pos: Pos, span: Span) -> Result<(), Diagnostic> {
        let Some(target) = self.anchors.get(&id) else {
            // The parser knows the anchor, so it is still open: the alias is inside it.
            let name = self.text_at(span.start.index());
            return Err(Diagnostic::new(
                pos,
                format!("alias \"{name}\" refers to a node that contains it"),
            ));
        };
        let (size, height) = (target.size, target.height);
        // Priced before copying: expanding a "billion laughs" file must stop here, long before
        // the exponential tree would exist.
        if self.total.saturating_add(size) > self.limits.max_nodes {
            return Err(Diagnostic::new(
                pos,
                format!(
                    "alias expansion exceeds {} nodes (a \"billion laughs\" file?)",
                    self.limits.max_nodes
                ),
            ));
        }
        if self.stack.len() + height > self.limits.max_depth {
            return Err(Diagnostic::new(
                pos,
                format!("nesting deeper than {} levels", self.limits.max_depth),
            ));
        }
        self.total += size;
        let mut node = target.node.clone();
        node.pos = pos;
        self.finish(Built { node, size, height }, 0)
    }

    fn close(&mut self) -> Result<(), Diagnostic> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let kind = match frame.open {
            Open::Seq(items) => NodeKind::Seq(items),
            Open::Map { entries, key } => {
                let mut entries = entries;
                if let Some(key) = key {
                    // A key without a value cannot reach here through the parser, but a lone
                    // key means null in YAML.
                    let pos = key.pos;
                    entries.push((
                        key,
                        Node {
                            pos,
                            kind: NodeKind::Null,
                        },
                    ));
                }
                NodeKind::Map(resolve_map(entries)?)
            }
        };
        let built = Built {
            node: Node {
                pos: frame.pos,
                kind,
            },
            size: frame.size,
            height: frame.height,
        };
        self.finish(built, frame.anchor)
    }

    fn finish(&mut self, built: Built, anchor: usize) -> Result<(), Diagnostic> {
        if anchor != 0 {
            self.anchors.insert(
                anchor,
                Built {
                    node: built.node.clone(),
                    size: built.size,
                    height: built.height,
                },
            );
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(built.node);
            return Ok(());
        };
        parent.size = parent.size.saturating_add(built.size);
        parent.height = parent.height.max(built.height + 1);
        match &mut parent.open {
            Open::Seq(items) => items.push(built.node),
            Open::Map { entries, key } => match key.take() {
                None => *key = Some(built.node),
                Some(k) => entries.push((k, built.node)),
            },
        }
        Ok(())
    }
}

fn is_merge_key(key: &Node) -> bool {
    key.as_plain() == Some("<<")
}

/// Applies `<<` merge keys (explicit keys win; among merged mappings the first wins) and
/// rejects duplicate keys.
fn resolve_map(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, Diagnostic> {
    let mut seen: HashMap<String, Pos> = HashMap::new();
    for (k, _) in entries.iter().filter(|(k, _)| !is_merge_key(k)) {
        if let Some(text) = key_text(k) {
            if let Some(first) = seen.get(&text) {
                return Err(Diagnostic::new(
                    k.pos,
                    format!("duplicate key \"{text}\" (first at line {})", first.line),
                ));
            }
            seen.insert(text, k.pos);
        }
    }
    if !entries.iter().any(|(k, _)| is_merge_key(k)) {
        return Ok(entries);
    }
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        if !is_merge_key(&k) {
            out.push((k, v));
            continue;
        }
        let at = v.pos;
        let sources = match v.kind {
            NodeKind::Map(m) => vec![m],
            NodeKind::Seq(items) => {
                let mut maps = Vec::with_capacity(items.len());
                for item in items {
                    match item.kind {
                        NodeKind::Map(m) => maps.push(m),
                        _ => return Err(merge_error(at)),
                    }
                }
                maps
            }
            _ => return Err(merge_error(at)),
        };
        for (mk, mv) in sources.into_iter().flatten() {
            match key_text(&mk) {
                Some(text) if seen.contains_key(&text) => {}
                Some(text) => {
                    seen.insert(text, mk.pos);
                    out.push((mk, mv));
                }
                None => out.push((mk, mv)),
            }
        }
    }
    Ok(out)
}

fn merge_error(pos: Pos) -> Diagnostic {
    Diagnostic::new(
        pos,
        "a merge key (<<) takes a mapping or a list of mappings",
    )
}

fn key_text(key: &Node) -> Option<String> {
    match &key.kind {
        NodeKind::Scalar { value, .. } => Some(value.clone()),
        NodeKind::Null => Some("null".to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn doc(src: &str) -> Node {
        parse_document(src, &Limits::default()).unwrap()
    }

    fn err(src: &str) -> String {
        let d = parse_document(src, &Limits::default()).unwrap_err();
        format!("{}: {}", d.pos, d.message)
    }

    fn scalar(n: &Node) -> &str {
        n.as_str().unwrap()
    }

    #[test]
    fn positions_are_one_based() {
        let n = doc("a: 1\nb:\n  - x\n  - \"y\"\n");
        let m = n.as_map().unwrap();
        assert_eq!(n.pos, Pos::new(1, 1));
        assert_eq!(m[0].0.pos, Pos::new(1, 1));
        assert_eq!(m[0].1.pos, Pos::new(1, 4));
        assert_eq!(m[1].0.pos, Pos::new(2, 1));
        let seq = m[1].1.as_seq().unwrap();
        assert_eq!(seq[0].pos, Pos::new(3, 5));
        assert_eq!(seq[1].pos, Pos::new(4, 5));
        assert_eq!(
            seq[1].kind,
            NodeKind::Scalar {
                value: "y".into(),
                plain: false
            }
        );
    }

    #[test]
    fn nulls_and_styles() {
        let n = doc("a: ~\nb: null\nc:\nd: ''\ne: !!str 1\nf: 1\n");
        assert!(n.get("a").unwrap().is_null());
        assert!(n.get("b").unwrap().is_null());
        assert!(n.get("c").unwrap().is_null());
        assert_eq!(n.get("d").unwrap().as_str(), Some(""));
        assert_eq!(n.get("e").unwrap().as_plain(), None);
        assert_eq!(n.get("e").unwrap().describe(), "a string");
        assert_eq!(n.get("f").unwrap().describe(), "a number");
    }

    #[test]
    fn key_order_is_kept() {
        let n = doc("z: 1\na: 2\nm: 3\n");
        let keys: Vec<&str> = n.as_map().unwrap().iter().map(|(k, _)| scalar(k)).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn aliases_expand() {
        let n = doc("a: &x [1, 2]\nb: *x\n");
        assert_eq!(n.get("b").unwrap().as_seq().unwrap().len(), 2);
        assert_eq!(n.get("b").unwrap().pos, Pos::new(2, 4));
    }

    #[test]
    fn merge_keys() {
        let n = doc(
            "base: &b {image: rust, timeout: 1m}\nextra: &e {cpus: 2, image: alpine}\n\
             one:\n  <<: *b\n  timeout: 2m\nmany:\n  <<: [*e, *b]\n",
        );
        let one = n.get("one").unwrap();
        assert_eq!(scalar(one.get("image").unwrap()), "rust");
        assert_eq!(scalar(one.get("timeout").unwrap()), "2m");
        assert_eq!(one.as_map().unwrap().len(), 2);
        let many = n.get("many").unwrap();
        assert_eq!(scalar(many.get("image").unwrap()), "alpine");
        assert_eq!(scalar(many.get("timeout").unwrap()), "1m");
        assert_eq!(many.as_map().unwrap().len(), 3);
        assert_eq!(
            err("a: &a [1]\nb:\n  <<: *a\n"),
            "3:7: a merge key (<<) takes a mapping or a list of mappings"
        );
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(
            err("a: 1\nb: 2\na: 3\n"),
            "3:1: duplicate key \"a\" (first at line 1)"
        );
    }

    #[test]
    fn unknown_and_recursive_alias() {
        assert_eq!(err("a: 1\nb: *nope\n"), "2:4: unknown alias \"*nope\"");
        assert_eq!(
            err("a: &x [1, *x]\n"),
            "1:11: alias \"*x\" refers to a node that contains it"
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = err("a: [1, 2\nb: 3\n");
        assert!(e.contains("invalid YAML"), "{e}");
        let e = err("a: b: c\n");
        assert!(e.starts_with("1:"), "{e}");
    }

    #[test]
    fn empty_and_multiple_documents() {
        assert_eq!(err(""), "1:1: empty pipeline file");
        assert_eq!(err("# only a comment\n"), "1:1: empty pipeline file");
        assert_eq!(
            err("a: 1\n---\nb: 2\n"),
            "3:1: a second YAML document starts here; a pipeline file holds exactly one"
        );
        let docs = parse_documents("a: 1\n---\nb: 2\n---\n", &Limits::default()).unwrap();
        assert_eq!(docs.len(), 3);
        assert!(docs[2].is_null());
        assert!(parse_documents("", &Limits::default()).unwrap().is_empty());
    }

    #[test]
    fn depth_limit() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(err(&deep), "1:65: nesting deeper than 64 levels");
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_document(&ok, &Limits::default()).is_ok());
        // An alias may not smuggle depth past the limit either.
        let inner = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let src = format!("a: &x {inner}\nb: {}*x{}\n", "[".repeat(30), "]".repeat(30));
        assert!(err(&src).ends_with("nesting deeper than 64 levels"));
    }

    #[test]
    fn billion_laughs_fails_fast() {
        let mut src = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let start = Instant::now();
        let e = err(&src);
        assert!(e.contains("alias expansion exceeds 100000 nodes"), "{e}");
        assert!(start.elapsed().as_secs() < 2);
    }

    #[test]
    fn node_limit() {
        let limits = Limits {
            max_depth: 64,
            max_nodes: 10,
        };
        let e = parse_document("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]", &limits).unwrap_err();
        assert_eq!(e.message, "document has more than 10 nodes");
    }

    #[test]
    fn describe_values() {
        let n = doc("a: true\nb: 1.5\nc: text\nd: [1]\ne: {x: 1}\nf: '1'\ng: 0x1F\n");
        let d = |k: &str| n.get(k).unwrap().describe();
        assert_eq!(d("a"), "a boolean");
        assert_eq!(d("b"), "a number");
        assert_eq!(d("c"), "a string");
        assert_eq!(d("d"), "a list");
        assert_eq!(d("e"), "a mapping");
        assert_eq!(d("f"), "a string");
        assert_eq!(d("g"), "a number");
    }
}
