//! A module tree read from source: its modules (file and inline), the paths each
//! one writes, and where those paths lead.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use super::lexer::{Lexer, Tok, Token};

/// A tree of modules: its root file and the path its own code names the root by.
pub struct Tree {
    pub name: &'static str,
    /// Relative to the package root.
    pub root_file: &'static str,
    pub prefix: &'static [&'static str],
}

/// How many imports one path is followed through.
const MAX_HOPS: usize = 8;

/// Item keywords whose next identifier is a name defined in the module.
const ITEM_KEYWORDS: &[&str] = &["fn", "struct", "enum", "trait", "type", "const", "static"];

pub fn package_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn relative(file: &Path) -> String {
    let rel = file.strip_prefix(package_root()).unwrap_or(file);
    rel.to_string_lossy().replace('\\', "/")
}

/// A module's path from its tree's root (empty for the root).
pub type ModPath = Vec<String>;

#[derive(Default)]
pub struct Module {
    /// Relative path of the file that holds it (an inline module: its file's).
    pub file: String,
    /// Declared under `#[cfg(test)]`.
    test: bool,
    /// Module-level `use` declarations: the name bound (None for a glob) and the
    /// path as written.
    imports: Vec<(Option<String>, Vec<String>)>,
    /// Names of the items defined here, to follow glob imports.
    items: BTreeSet<String>,
}

/// A path as written somewhere in a module.
pub struct Ref {
    pub module: ModPath,
    pub path: Vec<String>,
    pub at: Loc,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

pub struct Model {
    prefix: &'static [&'static str],
    pub modules: BTreeMap<ModPath, Module>,
    pub refs: Vec<Ref>,
}

/// A file still to read: its path, its module, and whether its `mod x;` children
/// live beside it (`lib.rs`, `mod.rs`, `#[path]` files) or in a folder named after it.
struct Pending {
    file: PathBuf,
    module: ModPath,
    owns_dir: bool,
}

/// Reads the tree from its root file along `mod` declarations.
pub fn load(tree: &Tree) -> Model {
    let mut model = Model {
        prefix: tree.prefix,
        modules: BTreeMap::new(),
        refs: Vec::new(),
    };
    let mut queue = VecDeque::from([Pending {
        file: package_root().join(tree.root_file),
        module: Vec::new(),
        owns_dir: true,
    }]);
    while let Some(pending) = queue.pop_front() {
        let text = std::fs::read_to_string(&pending.file)
            .unwrap_or_else(|e| panic!("{}: {e}", pending.file.display()));
        let rel = relative(&pending.file);
        model
            .modules
            .entry(pending.module.clone())
            .or_default()
            .file = rel.clone();
        let mut parser = FileParser {
            toks: Lexer::tokens(&text),
            pending: &pending,
            rel,
            stack: vec![(pending.module.clone(), 0)],
            depth: 0,
            path_attr: None,
            cfg_test: false,
            inline_mod: None,
            children: Vec::new(),
        };
        parser.parse(&mut model);
        queue.extend(parser.children);
    }
    model
}

// ---------------------------------------------------------------- parsing a file

/// A leaf of a `use` tree: the full path, and the name it binds (None for `*`).
struct UseLeaf {
    path: Vec<String>,
    name: Option<String>,
    line: usize,
}

struct FileParser<'a> {
    toks: Vec<Token>,
    pending: &'a Pending,
    rel: String,
    /// Open modules (the file's own, then inline ones) and the brace depth of their items.
    stack: Vec<(ModPath, usize)>,
    depth: usize,
    /// A `#[path = "…"]` waiting for its `mod`.
    path_attr: Option<String>,
    /// A `#[cfg(test)]` waiting for its item.
    cfg_test: bool,
    /// An inline `mod name` (and whether it is under `cfg(test)`) waiting for its `{`.
    inline_mod: Option<(String, bool)>,
    children: Vec<Pending>,
}

impl FileParser<'_> {
    fn tok(&self, i: usize) -> Option<&Tok> {
        self.toks.get(i).map(|t| &t.tok)
    }

    fn ident(&self, i: usize) -> Option<&str> {
        match self.tok(i) {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn module(&self) -> &ModPath {
        &self.stack.last().unwrap().0
    }

    fn at_module_level(&self) -> bool {
        self.stack.last().unwrap().1 == self.depth
    }

    fn loc(&self, line: usize) -> Loc {
        Loc {
            file: self.rel.clone(),
            line,
        }
    }

    fn parse(&mut self, model: &mut Model) {
        let mut i = 0;
        while let Some(tok) = self.tok(i) {
            i = match tok {
                Tok::Punct('{') => self.open(model, i),
                Tok::Punct('}') => self.close(i),
                Tok::Punct(';') => self.end_item(i),
                Tok::Punct('#') => self.attribute(i),
                Tok::Ident(w) if w == "mod" => self.mod_decl(model, i),
                Tok::Ident(w) if w == "use" => self.use_decl(model, i),
                Tok::Ident(w) if ITEM_KEYWORDS.contains(&w.as_str()) => self.item(model, i),
                Tok::Ident(_) => self.path(model, i),
                _ => i + 1,
            };
        }
    }

    /// Attributes apply to the next item only.
    fn end_item(&mut self, i: usize) -> usize {
        self.path_attr = None;
        self.cfg_test = false;
        i + 1
    }

    fn open(&mut self, model: &mut Model, i: usize) -> usize {
        self.depth += 1;
        self.end_item(i);
        if let Some((name, test)) = self.inline_mod.take() {
            let module = [self.module().clone(), vec![name]].concat();
            let entry = model.modules.entry(module.clone()).or_default();
            entry.file = self.rel.clone();
            entry.test = test;
            self.stack.push((module, self.depth));
        }
        i + 1
    }

    fn close(&mut self, i: usize) -> usize {
        if self.stack.len() > 1 && self.at_module_level() {
            self.stack.pop();
        }
        self.depth = self.depth.saturating_sub(1);
        self.end_item(i)
    }

    /// Notes `#[path = "…"]` and `#[cfg(test)]`; other attributes are read as code
    /// (paths in them count).
    fn attribute(&mut self, i: usize) -> usize {
        let toks: Vec<Tok> = (i + 1..i + 7)
            .filter_map(|j| self.tok(j).cloned())
            .collect();
        let word = |w: &str| Tok::Ident(w.to_owned());
        let punct = Tok::Punct;
        let cfg_test = [
            punct('['),
            word("cfg"),
            punct('('),
            word("test"),
            punct(')'),
        ];
        if toks.starts_with(&cfg_test) {
            self.cfg_test = true;
        }
        match toks.get(..4) {
            Some([open, path, eq, Tok::Str(file)])
                if [open, path, eq] == [&punct('['), &word("path"), &punct('=')] =>
            {
                self.path_attr = Some(file.clone());
                i + 5
            }
            _ => i + 1,
        }
    }

    /// `mod name;` queues the child's file; `mod name {` opens an inline module.
    fn mod_decl(&mut self, model: &mut Model, i: usize) -> usize {
        let Some(name) = self.ident(i + 1).map(str::to_owned) else {
            return i + 1;
        };
        match self.tok(i + 2) {
            Some(Tok::Punct(';')) => {
                let module = [self.module().clone(), vec![name.clone()]].concat();
                model.modules.entry(module.clone()).or_default().test = self.cfg_test;
                let (file, owns_dir) = self.child_file(&name);
                self.children.push(Pending {
                    file,
                    module,
                    owns_dir,
                });
            }
            Some(Tok::Punct('{')) => self.inline_mod = Some((name, self.cfg_test)),
            _ => {}
        }
        i + 2
    }

    /// Where `mod name;` lives (the Reference, "Module source filenames").
    fn child_file(&mut self, name: &str) -> (PathBuf, bool) {
        let file = &self.pending.file;
        let mut dir = file.parent().unwrap().to_path_buf();
        let inline = self.module()[self.pending.module.len()..].to_vec();
        if let Some(path) = self.path_attr.take() {
            return (dir.join(inline.join("/")).join(path), true);
        }
        if !self.pending.owns_dir {
            dir.push(file.file_stem().unwrap());
        }
        dir.extend(&inline);
        let flat = dir.join(format!("{name}.rs"));
        if flat.exists() {
            (flat, false)
        } else {
            (dir.join(name).join("mod.rs"), true)
        }
    }

    fn use_decl(&mut self, model: &mut Model, i: usize) -> usize {
        let mut leaves = Vec::new();
        let mut end = self.use_tree(i + 1, Vec::new(), &mut leaves);
        while self.tok(end).is_some_and(|t| *t != Tok::Punct(';')) {
            end += 1;
        }
        let module = self.module().clone();
        for leaf in leaves {
            if self.at_module_level() {
                let imports = &mut model.modules.get_mut(&module).unwrap().imports;
                imports.push((leaf.name, leaf.path.clone()));
            }
            model.refs.push(Ref {
                module: module.clone(),
                path: leaf.path,
                at: self.loc(leaf.line),
            });
        }
        end
    }

    /// Reads the use tree at `i` below `path`; returns the index after it.
    fn use_tree(&self, mut i: usize, mut path: Vec<String>, leaves: &mut Vec<UseLeaf>) -> usize {
        if self.tok(i) == Some(&Tok::Sep) {
            // `::name` is another crate, which no tree resolves.
            path.push("::".into());
            i += 1;
        }
        loop {
            let line = self.toks.get(i).map_or(0, |t| t.line);
            match self.tok(i) {
                Some(Tok::Ident(s)) if s == "self" && !path.is_empty() => {
                    let (name, after) = self.alias(i + 1, path.last().unwrap());
                    leaves.push(UseLeaf { path, name, line });
                    return after;
                }
                Some(Tok::Ident(s)) => {
                    path.push(s.clone());
                    if self.tok(i + 1) == Some(&Tok::Sep) {
                        i += 2;
                        continue;
                    }
                    let (name, after) = self.alias(i + 1, s);
                    leaves.push(UseLeaf { path, name, line });
                    return after;
                }
                Some(Tok::Punct('*')) => {
                    let name = None;
                    leaves.push(UseLeaf { path, name, line });
                    return i + 1;
                }
                Some(Tok::Punct('{')) => return self.use_group(i + 1, &path, leaves),
                _ => return i,
            }
        }
    }

    /// The inside of `{ a, b::c, }` after its `{`; returns the index after its `}`.
    fn use_group(&self, mut i: usize, prefix: &[String], leaves: &mut Vec<UseLeaf>) -> usize {
        loop {
            match self.tok(i) {
                Some(Tok::Punct('}')) => return i + 1,
                Some(Tok::Punct(',')) => i += 1,
                Some(_) => i = self.use_tree(i, prefix.to_vec(), leaves).max(i + 1),
                None => return i,
            }
        }
    }

    /// The name a use leaf binds: `as alias` if given (`as _` binds none), else its own.
    fn alias(&self, i: usize, own: &str) -> (Option<String>, usize) {
        if self.ident(i) != Some("as") {
            return (Some(own.to_owned()), i);
        }
        let alias = self.ident(i + 1).filter(|a| *a != "_").map(str::to_owned);
        (alias, i + 2)
    }

    /// Records the name of an item defined at module level.
    fn item(&mut self, model: &mut Model, i: usize) -> usize {
        if let (true, Some(name)) = (self.at_module_level(), self.ident(i + 1)) {
            let module = model.modules.get_mut(self.module()).unwrap();
            module.items.insert(name.to_owned());
        }
        i + 1
    }

    /// A path of two or more segments starting at `i` (not in the middle of one).
    fn path(&mut self, model: &mut Model, i: usize) -> usize {
        if i > 0 && self.tok(i - 1) == Some(&Tok::Sep) {
            return i + 1;
        }
        let mut path = vec![self.ident(i).unwrap().to_owned()];
        let mut end = i + 1;
        while let (Some(Tok::Sep), Some(segment)) = (self.tok(end), self.ident(end + 1)) {
            path.push(segment.to_owned());
            end += 2;
        }
        if path.len() > 1 {
            model.refs.push(Ref {
                module: self.module().clone(),
                path,
                at: self.loc(self.toks[i].line),
            });
        }
        end
    }
}

// ---------------------------------------------------------------- resolving paths

impl Model {
    fn is_module(&self, path: &[String]) -> bool {
        self.modules.contains_key(path)
    }

    /// Whether `module` compiles only in tests (it or an ancestor is `cfg(test)`).
    pub fn in_test_code(&self, module: &[String]) -> bool {
        (1..=module.len()).any(|n| self.modules.get(&module[..n]).is_some_and(|m| m.test))
    }

    /// The import named `name` in module `at`, as written.
    fn import(&self, at: &[String], name: &str) -> Option<&Vec<String>> {
        let imports = &self.modules.get(at)?.imports;
        imports
            .iter()
            .find(|(bound, _)| bound.as_deref() == Some(name))
            .map(|(_, path)| path)
    }

    /// The module `path`, written in module `at`, lands in; None when it leaves the
    /// tree (`std`, another crate, a local name).
    pub fn target(&self, at: &[String], path: &[String]) -> Option<ModPath> {
        Some(self.locate(self.absolute(at, path, 0)?))
    }

    /// `path`, written in module `at`, from the tree's root.
    fn absolute(&self, at: &[String], path: &[String], hops: usize) -> Option<ModPath> {
        if hops > MAX_HOPS {
            return None;
        }
        match path.first()?.as_str() {
            "crate" => {
                let prefix = self.prefix;
                let in_tree =
                    path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b);
                in_tree.then(|| path[prefix.len()..].to_vec())
            }
            "self" => Some([at, &path[1..]].concat()),
            "super" => {
                let ups = path.iter().take_while(|s| *s == "super").count();
                let base = at.get(..at.len().checked_sub(ups)?)?;
                Some([base, &path[ups..]].concat())
            }
            name => {
                let child = [at, &[name.to_owned()]].concat();
                if self.is_module(&child) {
                    return Some([at, path].concat());
                }
                let imported = self.absolute(at, self.import(at, name)?, hops + 1)?;
                Some([imported.as_slice(), &path[1..]].concat())
            }
        }
    }

    /// The length of `path`'s longest prefix that is a module.
    fn module_len(&self, path: &[String]) -> usize {
        (0..=path.len())
            .rev()
            .find(|&n| self.is_module(&path[..n]))
            .unwrap_or(0)
    }

    /// The module an absolute path lands in: its longest prefix that is a module,
    /// followed through that module's imports when the rest names one.
    fn locate(&self, mut path: ModPath) -> ModPath {
        for _ in 0..MAX_HOPS {
            let (module, rest) = path.split_at(self.module_len(&path));
            let Some(item) = rest.first() else {
                break;
            };
            match self.follow_import(module, item) {
                Some(target) => path = [target.as_slice(), &rest[1..]].concat(),
                None => break,
            }
        }
        path.truncate(self.module_len(&path));
        path
    }

    /// Where `module::item` really is when `module` imports it: the named import's
    /// path, or `source::item` when a glob imports from a `source` that defines it.
    fn follow_import(&self, module: &[String], item: &str) -> Option<ModPath> {
        if let Some(path) = self.import(module, item) {
            return self.absolute(module, path, 0);
        }
        let imports = &self.modules.get(module)?.imports;
        imports
            .iter()
            .filter(|(bound, _)| bound.is_none())
            .filter_map(|(_, path)| self.absolute(module, path, 0))
            .find(|source| {
                self.modules
                    .get(source)
                    .is_some_and(|m| m.items.contains(item))
            })
            .map(|source| [source.as_slice(), &[item.to_owned()]].concat())
    }
}
