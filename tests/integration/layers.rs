//! The layer order of ARCHITECTURE.md, checked over the sources: a module imports only from
//! layers below its own. This guards against the import cycles that made every layer depend on
//! every other (configuration importing the pipeline's number formatting, notifications
//! importing reports), so a helper two layers need lands in the lower one or in a leaf.
//!
//! Every `crate::` path counts: `use` trees, paths in code and types, and paths inside macro
//! calls; `super::` paths are resolved against the file's module. A top-level module that is
//! not in the table fails the test too, so a new module is placed on purpose.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Top-level modules of `src/`, lowest layer first. A module may import modules of a lower
/// rank only; the leaves (rank 0) import nothing from the crate.
const LAYERS: &[(&str, u32)] = &[
    ("clock", 0),
    ("format", 0),
    ("series", 0),
    ("vocab", 0),
    ("store", 1),
    ("query", 2),
    ("silence", 3),
    ("config", 4),
    ("metrics", 5),
    ("supervisor", 6),
    ("source", 7),
    ("rules", 8),
    ("history", 9),
    ("notify", 10),
    ("pipeline", 11),
    ("api", 12),
    ("dashboard", 13),
    ("report", 14),
    ("server", 15),
    ("backtest", 16),
    ("daemon", 17),
    ("demo", 18),
    ("cli", 19),
];

fn rank(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The top-level modules a file's paths reach into, other than its own.
struct Imports {
    /// The module the visitor is in: the file's module, then inline `mod`s.
    module: Vec<String>,
    found: BTreeSet<String>,
}

impl Imports {
    /// Resolves a path's leading segments to the top-level module it names, if it is
    /// `crate::x…` or `super::…` that leaves the current top-level module.
    fn resolve(&mut self, segments: &[String]) {
        let target = match segments.first().map(String::as_str) {
            Some("crate") => segments.get(1).cloned(),
            Some("super") => {
                let mut base = self.module.clone();
                let mut rest = segments;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
                match base.first() {
                    Some(top) => Some(top.clone()),
                    None => rest.first().cloned(),
                }
            }
            _ => None,
        };
        if let Some(t) = target
            && Some(&t) != self.module.first()
        {
            self.found.insert(t);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.resolve(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.resolve(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(&prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// `crate :: x` inside a macro's tokens (a `tracing::info!` field, a `format!` argument).
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let trees: Vec<proc_macro2::TokenTree> = tokens.into_iter().collect();
        for (i, t) in trees.iter().enumerate() {
            match t {
                proc_macro2::TokenTree::Group(g) => self.tokens(g.stream()),
                proc_macro2::TokenTree::Ident(id) if id == "crate" => {
                    let colons = matches!(
                        (trees.get(i + 1), trees.get(i + 2)),
                        (Some(proc_macro2::TokenTree::Punct(a)), Some(proc_macro2::TokenTree::Punct(b)))
                            if a.as_char() == ':' && b.as_char() == ':'
                    );
                    if let (true, Some(proc_macro2::TokenTree::Ident(next))) =
                        (colons, trees.get(i + 3))
                    {
                        self.resolve(&["crate".to_string(), next.to_string()]);
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Imports {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.module.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.module.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() >= 2 {
            self.resolve(&segments);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("read src/ entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `[a, b]`; `src/a/mod.rs` → `[a]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

#[test]
fn modules_import_only_from_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let module = module_of(&src, file);
        if matches!(module.as_slice(), [m] if m == "lib" || m == "main") {
            continue;
        }
        let top = module[0].clone();
        let Some(own) = rank(&top) else {
            problems.push(format!(
                "{}: module `{top}` has no layer in tests/integration/layers.rs (and ARCHITECTURE.md)",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut imports = Imports {
            module,
            found: BTreeSet::new(),
        };
        imports.visit_file(&ast);
        checked += 1;
        for target in imports.found {
            match rank(&target) {
                Some(r) if r < own => {}
                Some(r) => problems.push(format!(
                    "{}: `{top}` (layer {own}) imports `crate::{target}` (layer {r})",
                    file.display()
                )),
                None => problems.push(format!(
                    "{}: imports `crate::{target}`, which has no layer",
                    file.display()
                )),
            }
        }
    }
    assert!(checked > 40, "only {checked} source files were checked");
    assert!(
        problems.is_empty(),
        "imports against the layer order:\n{}",
        problems.join("\n")
    );
}

/// The checker itself finds what it must: a `use` group, a macro argument, a `super` path that
/// leaves the module, and a type path.
#[test]
fn checker_sees_every_kind_of_path() {
    let text = r#"
        use crate::{store::Store, format::{rfc3339, format_value}};
        fn f() { tracing::info!(x = %crate::pipeline::thing(), "x"); }
        mod inner { use super::super::report::X; }
        struct S { a: crate::notify::Notification }
        mod tests { use super::*; }
    "#;
    let ast = syn::parse_file(text).expect("parses");
    let mut imports = Imports {
        module: vec!["config".to_string()],
        found: BTreeSet::new(),
    };
    imports.visit_file(&ast);
    let found: Vec<&str> = imports.found.iter().map(String::as_str).collect();
    assert_eq!(found, ["format", "notify", "pipeline", "report", "store"]);
}
