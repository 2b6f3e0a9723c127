//! Rust source as tokens, with comments dropped and literals opaque: a path that
//! appears in a comment, a doc comment or a string is not a reference.

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    /// A string literal's content: kept for `#[path = "…"]`, never read as code.
    Str(String),
    /// A number, character literal or lifetime.
    Lit,
    /// `::`
    Sep,
    Punct(char),
}

pub struct Token {
    pub tok: Tok,
    /// 1-based.
    pub line: usize,
}

/// Splits Rust source into tokens, dropping comments (doc comments included).
pub struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    out: Vec<Token>,
}

impl Lexer {
    pub fn tokens(text: &str) -> Vec<Token> {
        let mut lexer = Lexer {
            chars: text.chars().collect(),
            i: 0,
            line: 1,
            out: Vec::new(),
        };
        lexer.run();
        lexer.out
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) {
        if self.peek(0) == Some('\n') {
            self.line += 1;
        }
        self.i += 1;
    }

    fn push(&mut self, tok: Tok, line: usize) {
        self.out.push(Token { tok, line });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            let line = self.line;
            match (c, self.peek(1)) {
                ('/', Some('/')) => self.line_comment(),
                ('/', Some('*')) => self.block_comment(),
                ('"', _) => {
                    let text = self.string();
                    self.push(Tok::Str(text), line);
                }
                ('\'', _) => self.char_or_lifetime(),
                (':', Some(':')) => {
                    self.bump();
                    self.bump();
                    self.push(Tok::Sep, line);
                }
                _ if c.is_alphabetic() || c == '_' => self.word(),
                _ if c.is_ascii_digit() => {
                    self.ident();
                    self.push(Tok::Lit, line);
                }
                _ if c.is_whitespace() => self.bump(),
                _ => {
                    self.bump();
                    self.push(Tok::Punct(c), line);
                }
            }
        }
    }

    fn line_comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    /// Block comments nest.
    fn block_comment(&mut self) {
        let mut depth = 0;
        while let Some(c) = self.peek(0) {
            match (c, self.peek(1)) {
                ('/', Some('*')) => depth += 1,
                ('*', Some('/')) => depth -= 1,
                _ => {
                    self.bump();
                    continue;
                }
            }
            self.bump();
            self.bump();
            if depth == 0 {
                return;
            }
        }
    }

    fn ident(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek(0).filter(|c| c.is_alphanumeric() || *c == '_') {
            word.push(c);
            self.bump();
        }
        word
    }

    /// An identifier, or the prefix of a literal (`r"…"`, `br#"…"#`, `b'x'`, `r#ident`).
    fn word(&mut self) {
        let line = self.line;
        let word = self.ident();
        let raw_hashes = (0..).take_while(|&k| self.peek(k) == Some('#')).count();
        let raw_string = self.peek(raw_hashes) == Some('"');
        match (word.as_str(), self.peek(0)) {
            ("r" | "br" | "cr", Some('"' | '#')) if raw_string => {
                let text = self.raw_string(raw_hashes);
                self.push(Tok::Str(text), line);
            }
            ("r", Some('#')) => {
                self.bump();
                let word = self.ident();
                self.push(Tok::Ident(word), line);
            }
            ("b" | "c", Some('"')) => {
                let text = self.string();
                self.push(Tok::Str(text), line);
            }
            ("b", Some('\'')) => self.char_or_lifetime(),
            _ => self.push(Tok::Ident(word), line),
        }
    }

    /// At the opening quote; returns the content, escapes left as written.
    fn string(&mut self) -> String {
        let mut text = String::new();
        self.bump();
        while let Some(c) = self.peek(0) {
            self.bump();
            match c {
                '"' => break,
                '\\' => self.bump(),
                _ => text.push(c),
            }
        }
        text
    }

    /// At the first `#` or the quote of `r#"…"#`.
    fn raw_string(&mut self, hashes: usize) -> String {
        for _ in 0..=hashes {
            self.bump();
        }
        let mut text = String::new();
        while let Some(c) = self.peek(0) {
            let closes = c == '"' && (1..=hashes).all(|k| self.peek(k) == Some('#'));
            self.bump();
            if closes {
                (0..hashes).for_each(|_| self.bump());
                break;
            }
            text.push(c);
        }
        text
    }

    /// `'x'`, `'\n'`, `'\u{2192}'`, or a lifetime `'a` (which has no closing quote).
    fn char_or_lifetime(&mut self) {
        let line = self.line;
        self.bump();
        if self.peek(0) == Some('\\') {
            self.bump();
            self.bump();
            while self.peek(0).is_some_and(|c| c != '\'') {
                self.bump();
            }
            self.bump();
        } else if self.peek(1) == Some('\'') {
            self.bump();
            self.bump();
        } else {
            self.ident();
        }
        self.push(Tok::Lit, line);
    }
}

/// Comments, strings, raw strings, lifetimes and char literals are not code.
#[test]
fn the_lexer_drops_comments_and_literals() {
    let text = r###"
        // crate::x
        /// crate::x
        /* crate::x /* nested */ crate::x */
        let s = "crate::x \" crate::x";
        let r = r#"crate::x " crate::x"#;
        fn f<'a>(c: char) -> &'a str { if c == '"' { "" } else { crate::y::z() } }
        let q = '\''; let b = b"crate::x";
    "###;
    let idents: Vec<String> = Lexer::tokens(text)
        .into_iter()
        .filter_map(|t| match t.tok {
            Tok::Ident(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(!idents.contains(&"x".to_owned()), "{idents:?}");
    assert!(idents.contains(&"y".to_owned()), "{idents:?}");
}
