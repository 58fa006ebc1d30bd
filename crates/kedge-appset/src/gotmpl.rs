//! A compact evaluator of the subset of Go's text/template (and Sprig) that Argo CD's ApplicationSet documentation
//! uses: fields, variables, pipelines, `if`/`else if`/`else`, `range`, `with`, comparison and the common Sprig
//! string functions. Anything else (`define`, `template`, `block`, `break`, unknown functions) is refused when the
//! template is parsed, with the name of what is missing.
//!
//! Why not the `gtmpl` crate: its last release (0.7.1) is from August 2021, it brings Go's built-in functions only
//! (every Sprig function would be written against its own value type, after converting the parameters to it), and
//! `missingkey=error` would need checking on top; the subset ApplicationSets use is small enough to evaluate here over
//! `serde_json::Value`, with errors that name the key or function and a parse step that refuses what is not
//! implemented.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Why a Go template cannot be parsed or executed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoTemplateError {
    /// The template is not valid (or uses what Kedge does not implement).
    #[error("template {template:?}: {message}")]
    Parse {
        /// The template text.
        template: String,
        /// What is wrong.
        message: String,
    },
    /// Executing it failed (a missing key with `missingkey=error`, a wrong argument).
    #[error("template {template:?}: {message}")]
    Exec {
        /// The template text.
        template: String,
        /// What failed.
        message: String,
    },
}

/// What a missing map key evaluates to (Go's `missingkey` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Go's default: nothing, printed `<no value>`.
    #[default]
    Default,
    /// Execution stops with an error naming the key.
    Error,
}

/// The Sprig and Go functions templates may call.
pub const FUNCTIONS: &[&str] = &[
    // Go's built-ins.
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "urlquery", // Sprig.
    "default",
    "empty",
    "coalesce",
    "ternary",
    "lower",
    "upper",
    "title",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "replace",
    "trunc",
    "quote",
    "squote",
    "toJson",
    "toPrettyJson",
    "toRawJson",
    "toYaml",
    "fromJson",
    "fromYaml",
    "toString",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "splitList",
    "join",
    "list",
    "dict",
    "get",
    "hasKey",
    "keys",
    "b64enc",
    "b64dec",
    "sha256sum",
    "repeat",
    "nospace",
    "cat",
    "add",
    "sub",
    "atoi",
    "int", // Argo CD's own.
    "normalize",
    "slugify",
];

// ---------------------------------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
    /// `.` or `.a.b` (the dot's fields).
    Field(Vec<String>),
    /// `$` or `$x`, with fields.
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(Value),
}

/// One token with whether a blank preceded it (`(x).a` vs `(x) .a`).
#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    spaced: bool,
}

fn lex_action(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let mut spaced = true;
    let mut parens = 0usize;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    let fields = |chars: &[char], i: &mut usize| -> Vec<String> {
        let mut fields = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            let start = *i + 1;
            let mut j = start;
            while j < chars.len() && ident_char(chars[j]) {
                j += 1;
            }
            if j == start {
                break;
            }
            fields.push(chars[start..j].iter().collect());
            *i = j;
        }
        fields
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            spaced = true;
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                parens += 1;
                if parens > MAX_NESTING {
                    return Err(format!("parentheses nest deeper than {MAX_NESTING}"));
                }
                Tok::LParen
            }
            ')' => {
                i += 1;
                parens = parens.saturating_sub(1);
                Tok::RParen
            }
            '|' => {
                i += 1;
                Tok::Pipe
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Tok::Declare
            }
            '=' => {
                i += 1;
                Tok::Assign
            }
            '.' if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                lex_number(&chars, &mut i)?
            }
            '.' => {
                let f = fields(&chars, &mut i);
                if f.is_empty() {
                    i += 1;
                }
                Tok::Field(f)
            }
            '$' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && ident_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                i = j;
                Tok::Var(name, fields(&chars, &mut i))
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some('r') => s.push('\r'),
                                Some('\\') => s.push('\\'),
                                Some('"') => s.push('"'),
                                Some('\'') => s.push('\''),
                                Some(o) => return Err(format!("unknown escape \\{o} in a string")),
                                None => return Err("unterminated quoted string".into()),
                            }
                        }
                        Some(&o) => s.push(o),
                    }
                    i += 1;
                }
                i += 1;
                Tok::Str(s)
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or("unterminated raw string")?;
                i = start + end + 1;
                Tok::Str(chars[start..start + end].iter().collect())
            }
            c if c.is_ascii_digit()
                || (c == '-' || c == '+') && chars.get(i + 1).is_some_and(char::is_ascii_digit) =>
            {
                lex_number(&chars, &mut i)?
            }
            c if ident_char(c) => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                Tok::Ident(chars[start..i].iter().collect())
            }
            other => return Err(format!("unexpected {other:?} in an action")),
        };
        out.push(Token { tok, spaced });
        spaced = false;
    }
    Ok(out)
}

fn lex_number(chars: &[char], i: &mut usize) -> Result<Tok, String> {
    let start = *i;
    *i += 1;
    while *i < chars.len()
        && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '.' || chars[*i] == '_')
    {
        *i += 1;
    }
    let text: String = chars[start..*i].iter().filter(|&&c| c != '_').collect();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Tok::Num(Value::from(n)));
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(n) = i64::from_str_radix(hex, 16)
    {
        return Ok(Tok::Num(Value::from(n)));
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(|n| Tok::Num(Value::Number(n)))
        .ok_or_else(|| format!("bad number syntax: {text:?}"))
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Value),
    Nil,
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Command {
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
struct Pipeline {
    vars: Vec<String>,
    declare: bool,
    cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Output(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// One lexed piece of the template: text, or the tokens of an action.
enum Item {
    Text(String),
    Action(Vec<Token>),
}

fn split_items(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_before =
            after.starts_with("- ") || after.starts_with("-\n") || after.starts_with("-\t");
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_owned()));
        }
        let body_start = if trim_before { 1 } else { 0 };
        let after = &after[body_start..];
        // The action ends at the first `}}` outside a string.
        let end = find_action_end(after).ok_or("unclosed action: missing }}")?;
        let mut body = &after[..end];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\n-") || body.ends_with("\t-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        let trimmed = body.trim();
        if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
            items.push(Item::Action(lex_action(body)?));
        }
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        items.push(Item::Text(text.to_owned()));
    }
    Ok(items)
}

fn find_action_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None if b == b'"' || b == b'`' => quote = Some(b),
            None if b == b'}' && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

struct Parser {
    items: std::vec::IntoIter<Item>,
    /// How many `if`, `range` and `with` enclose the current position.
    depth: usize,
}

/// The deepest nesting of blocks or parentheses a template may have (execution recurses as deep).
const MAX_NESTING: usize = 100;

/// How a list of nodes ended.
enum Stop {
    Eof,
    End,
    Else(Vec<Token>),
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Stop), String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("blocks nest deeper than {MAX_NESTING}"));
        }
        let result = self.list_inner();
        self.depth -= 1;
        result
    }

    fn list_inner(&mut self) -> Result<(Vec<Node>, Stop), String> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let tokens = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(tokens) => tokens,
            };
            let keyword = match tokens.first().map(|t| &t.tok) {
                Some(Tok::Ident(k)) => k.as_str(),
                None => return Err("empty action".into()),
                _ => "",
            };
            match keyword {
                "end" => return Ok((nodes, Stop::End)),
                "else" => return Ok((nodes, Stop::Else(tokens[1..].to_vec()))),
                "if" => nodes.push(self.if_node(&tokens[1..])?),
                "range" | "with" => {
                    let pipe = parse_pipeline(&tokens[1..], true)?;
                    let (body, end) = self.list()?;
                    let otherwise = match end {
                        Stop::End => Vec::new(),
                        Stop::Else(rest) if rest.is_empty() => self.until_end()?,
                        Stop::Else(_) => {
                            return Err(format!("`else if` is not allowed in {keyword}"));
                        }
                        Stop::Eof => {
                            return Err(format!(
                                "unexpected end of template: {keyword} without end"
                            ));
                        }
                    };
                    nodes.push(if keyword == "range" {
                        Node::Range {
                            pipe,
                            body,
                            otherwise,
                        }
                    } else {
                        Node::With {
                            pipe,
                            body,
                            otherwise,
                        }
                    });
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(format!(
                        "{keyword:?} is not supported in ApplicationSet templates"
                    ));
                }
                _ => nodes.push(Node::Output(parse_pipeline(&tokens, true)?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn until_end(&mut self) -> Result<Vec<Node>, String> {
        match self.list()? {
            (nodes, Stop::End) => Ok(nodes),
            (_, Stop::Else(_)) => Err("more than one else".into()),
            (_, Stop::Eof) => Err("unexpected end of template: missing {{end}}".into()),
        }
    }

    fn if_node(&mut self, cond: &[Token]) -> Result<Node, String> {
        let mut branches = vec![];
        let mut cond = parse_pipeline(cond, true)?;
        loop {
            let (body, end) = self.list()?;
            branches.push((cond, body));
            match end {
                Stop::End => {
                    return Ok(Node::If {
                        branches,
                        otherwise: Vec::new(),
                    });
                }
                Stop::Else(rest) if rest.is_empty() => {
                    return Ok(Node::If {
                        branches,
                        otherwise: self.until_end()?,
                    });
                }
                Stop::Else(rest) => match rest.first().map(|t| &t.tok) {
                    Some(Tok::Ident(k)) if k == "if" => cond = parse_pipeline(&rest[1..], true)?,
                    Some(Tok::Ident(k)) if k == "with" => {
                        return Err("`else with` is not supported".into());
                    }
                    _ => return Err("unexpected tokens after else".into()),
                },
                Stop::Eof => return Err("unexpected end of template: if without end".into()),
            }
        }
    }
}

fn parse_pipeline(tokens: &[Token], allow_decl: bool) -> Result<Pipeline, String> {
    let mut vars = Vec::new();
    let mut declare = false;
    let mut rest = tokens;
    // `$x :=`, `$i, $v :=` or `$x =`.
    if allow_decl {
        let mut i = 0;
        let mut names = Vec::new();
        while let Some(Token {
            tok: Tok::Var(name, f),
            ..
        }) = rest.get(i)
        {
            if !f.is_empty() {
                break;
            }
            names.push(name.clone());
            match rest.get(i + 1).map(|t| &t.tok) {
                Some(Tok::Comma) => i += 2,
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    declare = matches!(rest[i + 1].tok, Tok::Declare);
                    vars = names.clone();
                    rest = &rest[i + 2..];
                    break;
                }
                _ => break,
            }
        }
    }
    let mut cmds = Vec::new();
    let mut pos = 0;
    loop {
        let (cmd, next) = parse_command(rest, pos)?;
        cmds.push(cmd);
        match rest.get(next).map(|t| &t.tok) {
            None => break,
            Some(Tok::Pipe) => pos = next + 1,
            Some(other) => return Err(format!("unexpected {other:?} in a pipeline")),
        }
    }
    if cmds.is_empty() {
        return Err("missing value".into());
    }
    Ok(Pipeline {
        vars,
        declare,
        cmds,
    })
}

/// Parses one command from `tokens[pos..]`, up to `|`, `)` or the end; returns it and where it stopped.
fn parse_command(tokens: &[Token], mut pos: usize) -> Result<(Command, usize), String> {
    let mut args = Vec::new();
    while let Some(t) = tokens.get(pos) {
        let arg = match &t.tok {
            Tok::Pipe | Tok::RParen => break,
            Tok::Field(f) => Arg::Field(f.clone()),
            Tok::Var(v, f) => Arg::Var(v.clone(), f.clone()),
            Tok::Str(s) => Arg::Lit(Value::String(s.clone())),
            Tok::Num(n) => Arg::Lit(n.clone()),
            Tok::Ident(name) => match name.as_str() {
                "true" => Arg::Lit(Value::Bool(true)),
                "false" => Arg::Lit(Value::Bool(false)),
                "nil" => Arg::Nil,
                f if FUNCTIONS.contains(&f) => Arg::Func(f.to_owned()),
                "html" | "js" | "call" | "slice" | "printf_" => {
                    return Err(format!(
                        "function {name:?} is not supported in ApplicationSet templates"
                    ));
                }
                _ => {
                    return Err(format!(
                        "function {name:?} not defined (Kedge implements: {})",
                        FUNCTIONS.join(", ")
                    ));
                }
            },
            Tok::LParen => {
                // The sub-pipeline runs to the matching parenthesis.
                let mut depth = 0;
                let mut end = None;
                for (j, t) in tokens.iter().enumerate().skip(pos) {
                    match t.tok {
                        Tok::LParen => depth += 1,
                        Tok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or("unclosed left paren")?;
                let inner = parse_pipeline(&tokens[pos + 1..end], false)?;
                pos = end;
                let mut fields = Vec::new();
                if let Some(Token {
                    tok: Tok::Field(f),
                    spaced: false,
                }) = tokens.get(pos + 1)
                {
                    fields = f.clone();
                    pos += 1;
                }
                Arg::Sub(Box::new(inner), fields)
            }
            Tok::Comma | Tok::Declare | Tok::Assign => {
                return Err(format!("unexpected {:?} in a command", t.tok));
            }
        };
        args.push(arg);
        pos += 1;
    }
    if args.is_empty() {
        return Err("missing value for command".into());
    }
    Ok((Command { args }, pos))
}

/// A parsed Go template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
    missing: MissingKey,
}

impl Template {
    /// Parses `source`; unknown functions and unsupported actions are refused here.
    pub fn parse(source: &str, missing: MissingKey) -> Result<Self, GoTemplateError> {
        let err = |message: String| GoTemplateError::Parse {
            template: source.to_owned(),
            message,
        };
        let items = split_items(source).map_err(err)?;
        let mut parser = Parser {
            items: items.into_iter(),
            depth: 0,
        };
        let nodes = match parser.list().map_err(err)? {
            (nodes, Stop::Eof) => nodes,
            (_, Stop::End) => return Err(err("unexpected {{end}}".into())),
            (_, Stop::Else(_)) => return Err(err("unexpected {{else}}".into())),
        };
        Ok(Self {
            source: source.to_owned(),
            nodes,
            missing,
        })
    }

    /// Executes the template with `data` as dot (and `$`).
    pub fn execute(&self, data: &Value) -> Result<String, GoTemplateError> {
        let mut exec = Exec {
            vars: vec![("$".to_owned(), data.clone())],
            missing: self.missing,
        };
        let mut out = String::new();
        exec.nodes(&self.nodes, data, &mut out)
            .map_err(|message| GoTemplateError::Exec {
                template: self.source.clone(),
                message,
            })?;
        Ok(out)
    }
}

/// Parses and executes `source` once.
pub fn render(source: &str, data: &Value, missing: MissingKey) -> Result<String, GoTemplateError> {
    Template::parse(source, missing)?.execute(data)
}

// ---------------------------------------------------------------------------------------------------------------
// Execution

struct Exec {
    vars: Vec<(String, Value)>,
    missing: MissingKey,
}

impl Exec {
    fn nodes(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
        let scope = self.vars.len();
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Output(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.vars.is_empty() {
                        out.push_str(&print_value(&v));
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mut done = false;
                    for (cond, body) in branches {
                        let v = self.pipeline(cond, dot)?;
                        if truthy(&v) {
                            self.nodes(body, dot, out)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.nodes(otherwise, dot, out)?;
                    }
                }
                Node::With {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let inner = self.vars.len();
                    let v = self.pipeline(pipe, dot)?;
                    if truthy(&v) {
                        self.nodes(body, &v, out)?;
                    } else {
                        self.nodes(otherwise, dot, out)?;
                    }
                    self.vars.truncate(inner);
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => self.range(pipe, body, otherwise, dot, out)?,
            }
        }
        self.vars.truncate(scope);
        Ok(())
    }

    fn range(
        &mut self,
        pipe: &Pipeline,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<(), String> {
        let scope = self.vars.len();
        let plain = Pipeline {
            vars: Vec::new(),
            declare: false,
            cmds: pipe.cmds.clone(),
        };
        let v = self.pipeline(&plain, dot)?;
        let pairs: Vec<(Value, Value)> = match &v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::from(i), x.clone()))
                .collect(),
            Value::Object(m) => m
                .iter()
                .map(|(k, x)| (Value::String(k.clone()), x.clone()))
                .collect(),
            Value::Null => Vec::new(),
            other => return Err(format!("range can't iterate over {}", print_value(other))),
        };
        if pairs.is_empty() {
            return self.nodes(otherwise, dot, out);
        }
        for (key, elem) in pairs {
            match pipe.vars.as_slice() {
                [] => {}
                [v] => self.vars.push((v.clone(), elem.clone())),
                [k, v] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), elem.clone()));
                }
                _ => return Err("too many variables in range".into()),
            }
            self.nodes(body, &elem, out)?;
            self.vars.truncate(scope);
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, String> {
        let mut last: Option<Value> = None;
        for cmd in &p.cmds {
            last = Some(self.command(cmd, dot, last)?);
        }
        let value = last.unwrap_or(Value::Null);
        if let [name] = p.vars.as_slice() {
            if p.declare {
                self.vars.push((name.clone(), value.clone()));
            } else {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| format!("undefined variable: ${name}"))?;
                slot.1 = value.clone();
            }
        } else if p.vars.len() > 1 {
            return Err("too many declarations in a pipeline".into());
        }
        Ok(value)
    }

    fn command(
        &mut self,
        cmd: &Command,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, String> {
        let (first, rest) = cmd.args.split_first().ok_or("empty command")?;
        if let Arg::Func(name) = first {
            // `and` and `or` stop at the first value that decides.
            if name == "and" || name == "or" {
                let mut last = Value::Null;
                let n = rest.len() + usize::from(piped.is_some());
                if n == 0 {
                    return Err(format!(
                        "wrong number of args for {name}: want at least 1 got 0"
                    ));
                }
                for a in rest {
                    last = self.arg(a, dot)?;
                    if truthy(&last) == (name == "or") {
                        return Ok(last);
                    }
                }
                if let Some(p) = piped {
                    last = p;
                }
                return Ok(last);
            }
            let mut args = Vec::with_capacity(rest.len() + 1);
            for a in rest {
                args.push(self.arg(a, dot)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return call(name, args).map_err(|e| format!("error calling {name}: {e}"));
        }
        if !rest.is_empty() || piped.is_some() {
            return Err("can't give argument to non-function".into());
        }
        self.arg(first, dot)
    }

    fn arg(&mut self, arg: &Arg, dot: &Value) -> Result<Value, String> {
        match arg {
            Arg::Field(fields) => self.fields(dot, fields),
            Arg::Var(name, fields) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name || (name.is_empty() && n == "$"))
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("undefined variable: ${name}"))?;
                self.fields(&v, fields)
            }
            Arg::Func(name) => {
                call(name, Vec::new()).map_err(|e| format!("error calling {name}: {e}"))
            }
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Nil => Ok(Value::Null),
            Arg::Sub(p, fields) => {
                let v = self.pipeline(p, dot)?;
                self.fields(&v, fields)
            }
        }
    }

    fn fields(&self, base: &Value, fields: &[String]) -> Result<Value, String> {
        let mut v = base.clone();
        for f in fields {
            v = match v {
                Value::Object(mut m) => match m.remove(f) {
                    Some(x) => x,
                    None if self.missing == MissingKey::Error => {
                        return Err(format!("map has no entry for key {f:?}"));
                    }
                    None => Value::Null,
                },
                Value::Null if self.missing == MissingKey::Error => {
                    return Err(format!("nil pointer evaluating .{f}"));
                }
                Value::Null => Value::Null,
                other => {
                    return Err(format!(
                        "can't evaluate field {f} in type {}",
                        type_name(&other)
                    ));
                }
            };
        }
        Ok(v)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// The longest text `repeat` makes: a set's author cannot make the controller allocate without bound.
const MAX_REPEAT_BYTES: usize = 1 << 20;

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// How Go's `fmt` prints a value (`%v`): maps as `map[k:v]`, lists as `[a b]`, nothing as `<no value>`.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        other => to_text(other),
    }
}

/// The text of a value inside strings (`<nil>` for nothing, as Sprig's `toString`).
fn to_text(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(to_text).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", to_text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn number_text(n: &serde_json::Number) -> String {
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        _ => n.to_string(),
    }
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => to_text(other),
    }
}

fn as_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| format!("{n} is not an integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an integer")),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Null => Ok(0),
        other => Err(format!("{} is not an integer", type_name(other))),
    }
}

fn want(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x.partial_cmp(&y)
                .ok_or_else(|| "incomparable numbers".into())
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => Ok(compare(a, b)? == std::cmp::Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => Ok(a == b),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            Err(format!(
                "non-comparable types: {} and {}",
                type_name(a),
                type_name(b)
            ))
        }
        _ if std::mem::discriminant(a) != std::mem::discriminant(b) => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
        _ => Ok(a == b),
    }
}

/// Argo CD's `normalize`: a DNS-1123 subdomain made of `s` (lower case, other characters replaced by `-`).
pub fn normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let mut out: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(253);
    out.trim_matches(|c| c == '-' || c == '.').to_owned()
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'q' | 't')) => match args.next() {
                Some(a) if verb == 'q' => out.push_str(&go_quote(&as_str(a))),
                Some(a) => out.push_str(&to_text(a)),
                None => {
                    let _ = write!(out, "%!{verb}(MISSING)");
                }
            },
            Some(other) => {
                let _ = write!(out, "%!{other}(unsupported)");
            }
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, String> {
    let s = |i: usize| args.get(i).map(as_str).unwrap_or_default();
    Ok(match name {
        "not" => {
            want(name, &args, 1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "eq" => {
            let (first, rest) = args
                .split_first()
                .ok_or("missing argument for comparison")?;
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for r in rest {
                any |= equal(first, r)?;
            }
            Value::Bool(any)
        }
        "ne" => {
            want(name, &args, 2)?;
            Value::Bool(!equal(&args[0], &args[1])?)
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            let o = compare(&args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "len" => {
            want(name, &args, 1)?;
            Value::from(match &args[0] {
                Value::String(s) => s.len(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                other => return Err(format!("len of {}", type_name(other))),
            })
        }
        "index" => {
            let (first, keys) = args.split_first().ok_or("index of nothing")?;
            let mut v = first.clone();
            for k in keys {
                v = match (&v, k) {
                    (Value::Array(a), _) => {
                        let i = as_int(k)?;
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| a.get(i))
                            .cloned()
                            .ok_or_else(|| format!("index out of range: {i}"))?
                    }
                    (Value::Object(m), Value::String(key)) => {
                        m.get(key).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Null, _) => return Err("index of untyped nil".into()),
                    (other, _) => {
                        return Err(format!("can't index item of type {}", type_name(other)));
                    }
                };
            }
            v
        }
        "print" | "cat" => {
            let sep = if name == "cat" { " " } else { "" };
            Value::String(args.iter().map(to_text).collect::<Vec<_>>().join(sep))
        }
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(to_text).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            let (f, rest) = args.split_first().ok_or("printf needs a format")?;
            Value::String(printf(&as_str(f), rest))
        }
        "urlquery" => Value::String(
            args.iter()
                .map(to_text)
                .collect::<String>()
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".into(),
                    b => format!("%{b:02X}"),
                })
                .collect(),
        ),
        "default" => {
            // `default DEFAULT VALUE`: the value unless it is empty.
            match args.as_slice() {
                [d] => d.clone(),
                [d, v] => {
                    if truthy(v) {
                        v.clone()
                    } else {
                        d.clone()
                    }
                }
                _ => {
                    return Err(format!(
                        "wrong number of args for default: want 2 got {}",
                        args.len()
                    ));
                }
            }
        }
        "empty" => {
            want(name, &args, 1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "coalesce" => args
            .iter()
            .find(|v| truthy(v))
            .cloned()
            .unwrap_or(Value::Null),
        "ternary" => {
            want(name, &args, 3)?;
            if truthy(&args[2]) {
                args[0].clone()
            } else {
                args[1].clone()
            }
        }
        "lower" => Value::String(s(0).to_lowercase()),
        "upper" => Value::String(s(0).to_uppercase()),
        "title" => Value::String(
            s(0).split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "trim" => Value::String(s(0).trim().to_owned()),
        "nospace" => Value::String(s(0).chars().filter(|c| !c.is_whitespace()).collect()),
        "trimAll" => {
            want(name, &args, 2)?;
            let cut = s(0);
            Value::String(s(1).trim_matches(|c| cut.contains(c)).to_owned())
        }
        "trimPrefix" => {
            want(name, &args, 2)?;
            let (p, v) = (s(0), s(1));
            Value::String(v.strip_prefix(p.as_str()).unwrap_or(&v).to_owned())
        }
        "trimSuffix" => {
            want(name, &args, 2)?;
            let (p, v) = (s(0), s(1));
            Value::String(v.strip_suffix(p.as_str()).unwrap_or(&v).to_owned())
        }
        "replace" => {
            want(name, &args, 3)?;
            Value::String(s(2).replace(&s(0), &s(1)))
        }
        "trunc" => {
            want(name, &args, 2)?;
            let n = as_int(&args[0])?;
            let chars: Vec<char> = s(1).chars().collect();
            let len = i64::try_from(chars.len()).unwrap_or(i64::MAX);
            let text: String = if n >= 0 {
                chars.iter().take(usize::try_from(n).unwrap_or(0)).collect()
            } else if -n < len {
                chars[usize::try_from(len + n).unwrap_or(0)..]
                    .iter()
                    .collect()
            } else {
                chars.iter().collect()
            };
            Value::String(text)
        }
        "repeat" => {
            want(name, &args, 2)?;
            let count = usize::try_from(as_int(&args[0])?).unwrap_or(0);
            let text = s(1);
            if count.saturating_mul(text.len()) > MAX_REPEAT_BYTES {
                return Err(format!("the result would exceed {MAX_REPEAT_BYTES} bytes"));
            }
            Value::String(text.repeat(count))
        }
        "quote" | "squote" => Value::String(
            args.iter()
                .filter(|v| !v.is_null())
                .map(|v| {
                    if name == "quote" {
                        go_quote(&as_str(v))
                    } else {
                        format!("'{}'", as_str(v))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "toJson" | "toRawJson" => {
            want(name, &args, 1)?;
            Value::String(serde_json::to_string(&args[0]).map_err(|e| e.to_string())?)
        }
        "toPrettyJson" => {
            want(name, &args, 1)?;
            Value::String(serde_json::to_string_pretty(&args[0]).map_err(|e| e.to_string())?)
        }
        "toYaml" => {
            want(name, &args, 1)?;
            let text = serde_saphyr::to_string(&args[0]).map_err(|e| e.to_string())?;
            Value::String(text.trim_end_matches('\n').to_owned())
        }
        "fromJson" => {
            want(name, &args, 1)?;
            serde_json::from_str(&s(0)).map_err(|e| e.to_string())?
        }
        "fromYaml" => {
            want(name, &args, 1)?;
            serde_saphyr::from_str(&s(0)).map_err(|e| e.to_string())?
        }
        "toString" => Value::String(args.first().map(to_text).unwrap_or_default()),
        "contains" => {
            want(name, &args, 2)?;
            Value::Bool(s(1).contains(&s(0)))
        }
        "hasPrefix" => {
            want(name, &args, 2)?;
            Value::Bool(s(1).starts_with(&s(0)))
        }
        "hasSuffix" => {
            want(name, &args, 2)?;
            Value::Bool(s(1).ends_with(&s(0)))
        }
        "splitList" => {
            want(name, &args, 2)?;
            Value::Array(
                s(1).split(&s(0))
                    .map(|p| Value::String(p.to_owned()))
                    .collect(),
            )
        }
        "join" => {
            want(name, &args, 2)?;
            let parts = match &args[1] {
                Value::Array(a) => a.iter().map(as_str).collect::<Vec<_>>(),
                other => vec![as_str(other)],
            };
            Value::String(parts.join(&s(0)))
        }
        "list" => Value::Array(args),
        "dict" => {
            let mut m = Map::new();
            for pair in args.chunks(2) {
                m.insert(
                    as_str(&pair[0]),
                    pair.get(1).cloned().unwrap_or(Value::String(String::new())),
                );
            }
            Value::Object(m)
        }
        "get" => {
            want(name, &args, 2)?;
            match &args[0] {
                Value::Object(m) => m
                    .get(&s(1))
                    .cloned()
                    .unwrap_or(Value::String(String::new())),
                other => return Err(format!("get on {}", type_name(other))),
            }
        }
        "hasKey" => {
            want(name, &args, 2)?;
            Value::Bool(args[0].as_object().is_some_and(|m| m.contains_key(&s(1))))
        }
        "keys" => Value::Array(
            args.iter()
                .filter_map(Value::as_object)
                .flat_map(|m| m.keys().cloned().map(Value::String))
                .collect(),
        ),
        "b64enc" => {
            use base64::Engine as _;
            Value::String(base64::engine::general_purpose::STANDARD.encode(s(0)))
        }
        "b64dec" => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s(0))
                .map_err(|e| e.to_string())?;
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
        "sha256sum" => {
            use sha2::Digest as _;
            Value::String(hex::encode(sha2::Sha256::digest(s(0).as_bytes())))
        }
        "add" => Value::from(args.iter().map(as_int).sum::<Result<i64, _>>()?),
        "sub" => {
            want(name, &args, 2)?;
            Value::from(as_int(&args[0])? - as_int(&args[1])?)
        }
        "atoi" | "int" => Value::from(as_int(args.first().unwrap_or(&Value::Null)).unwrap_or(0)),
        "normalize" => Value::String(normalize(&s(0))),
        "slugify" => {
            // Argo CD's `slugify`: lower case, runs of other characters as one `-`, at most 50 characters.
            let mut out = String::new();
            for c in s(0).to_lowercase().chars() {
                if c.is_ascii_alphanumeric() {
                    out.push(c);
                } else if !out.ends_with('-') {
                    out.push('-');
                }
            }
            let mut out = out.trim_matches('-').to_owned();
            out.truncate(50);
            Value::String(out.trim_end_matches('-').to_owned())
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, data: Value) -> String {
        render(src, &data, MissingKey::Error).expect("renders")
    }

    #[test]
    fn fields_index_and_pipelines_as_argo_cd_examples_use_them() {
        let data = json!({"path": {"basename": "guestbook", "segments": ["apps", "guestbook"]}, "name": "In Cluster"});
        assert_eq!(run("{{.path.basename}}", data.clone()), "guestbook");
        assert_eq!(
            run("{{ index .path.segments 1 }}", data.clone()),
            "guestbook"
        );
        assert_eq!(
            run("{{.name | lower | replace \" \" \"-\"}}", data.clone()),
            "in-cluster"
        );
        assert_eq!(run("{{ normalize .name }}", data.clone()), "in-cluster");
        assert_eq!(
            run("{{ (index .path.segments 0) | upper }}", data.clone()),
            "APPS"
        );
        assert_eq!(
            run(
                "{{ $x := .path.basename }}{{ $x }}-{{ $.name | trunc 2 }}",
                data
            ),
            "guestbook-In"
        );
    }

    #[test]
    fn conditions_range_and_with() {
        let data =
            json!({"env": "prod", "n": 3, "items": ["a", "b"], "m": {"k": "v"}, "empty": ""});
        assert_eq!(
            run(
                "{{if eq .env \"prod\"}}P{{else if eq .env \"dev\"}}D{{else}}O{{end}}",
                data.clone()
            ),
            "P"
        );
        assert_eq!(
            run(
                "{{if and (gt .n 2) (ne .env \"x\")}}yes{{end}}",
                data.clone()
            ),
            "yes"
        );
        assert_eq!(
            run(
                "{{range $i, $v := .items}}{{$i}}={{$v}};{{end}}",
                data.clone()
            ),
            "0=a;1=b;"
        );
        assert_eq!(
            run(
                "{{range .nothing_here_is_fine_in_index}}x{{else}}none{{end}}",
                json!({"nothing_here_is_fine_in_index": []})
            ),
            "none"
        );
        assert_eq!(run("{{with .m}}{{.k}}{{end}}", data.clone()), "v");
        assert_eq!(
            run("{{ .empty | default \"fallback\" }}", data.clone()),
            "fallback"
        );
        assert_eq!(
            run("a\n  {{- .env -}}  \nb{{/* note */}}", data.clone()),
            "aprodb"
        );
        assert_eq!(
            run("{{ .m | toJson }} {{ .items | toYaml }}", data.clone()),
            "{\"k\":\"v\"} - a\n- b"
        );
        assert_eq!(
            run(
                "{{ quote .env }} {{ trimPrefix \"pr\" .env }} {{ trimSuffix \"od\" .env }}",
                data
            ),
            "\"prod\" od pr"
        );
    }

    #[test]
    fn missing_keys_and_unknown_functions_are_named() {
        let err = render("{{.nope}}", &json!({}), MissingKey::Error).expect_err("missing");
        assert!(
            err.to_string()
                .contains("map has no entry for key \"nope\""),
            "{err}"
        );
        assert_eq!(
            render("{{.nope}}", &json!({}), MissingKey::Default).expect("default"),
            "<no value>"
        );
        let err = render("{{ .a | shout }}", &json!({}), MissingKey::Error).expect_err("unknown");
        assert!(
            err.to_string().contains("function \"shout\" not defined"),
            "{err}"
        );
        let err =
            render("{{ template \"x\" }}", &json!({}), MissingKey::Error).expect_err("template");
        assert!(
            err.to_string().contains("\"template\" is not supported"),
            "{err}"
        );
        let err = render("{{ if .a }}", &json!({"a": 1}), MissingKey::Error).expect_err("unclosed");
        assert!(err.to_string().contains("without end"), "{err}");
        let err = render(
            "{{ repeat 1000000000 \"x\" }}",
            &json!({}),
            MissingKey::Error,
        )
        .expect_err("bounded");
        assert!(err.to_string().contains("exceed 1048576 bytes"), "{err}");
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(200), ")".repeat(200));
        let err = render(&deep, &json!({}), MissingKey::Error).expect_err("deep parentheses");
        assert!(err.to_string().contains("nest deeper than 100"), "{err}");
        let deep = "{{ if 1 }}".repeat(150) + &"{{ end }}".repeat(150);
        let err = render(&deep, &json!({}), MissingKey::Error).expect_err("deep blocks");
        assert!(err.to_string().contains("nest deeper than 100"), "{err}");
        let err = render("{{ .a ", &json!({}), MissingKey::Error).expect_err("unclosed action");
        assert!(err.to_string().contains("missing }}"), "{err}");
    }
}
