//! Rendered views: read-only files declared in the config file whose content is made from
//! values at each open — a JSON value's members in a file format, or a template.

pub mod formats;
pub mod template;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::cache::CachedValue;
use crate::error::{Error, Result};
use crate::inodes::{NodePath, CONTROL_DIR};
use crate::provider::Service;
pub use formats::Format;

/// What a view shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewSource {
    /// The members of the JSON value at a mount path (`sm/prod/db`) in a file format.
    Members {
        /// The mount path of the value.
        from: String,
        /// The file format.
        format: Format,
    },
    /// A template (minijinja) calling `ps(NAME)` and `sm(NAME)`.
    Template(String),
}

/// One `[[view]]` of the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewSpec {
    /// Where it is shown, relative to the mount root (`views/app.env`).
    pub path: String,
    /// What it shows.
    pub source: ViewSource,
}

impl ViewSpec {
    /// Check the view before mounting: a path outside the service and control directories
    /// without empty, `.` or `..` parts; a template that parses. The error names the view.
    pub fn check(&self) -> Result<()> {
        let parts = self.parts();
        let reserved = Service::ALL.iter().any(|s| s.dir_name() == parts[0]) || parts[0] == CONTROL_DIR;
        if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") || reserved {
            return Err(Error::Config(format!(
                "view {:?}: a view path is relative to the mount root, outside ps/, sm/ and {CONTROL_DIR}/",
                self.path
            )));
        }
        if let ViewSource::Template(text) = &self.source {
            template::check(text).map_err(|e| Error::Config(format!("view {:?}: {e}", self.path)))?;
        }
        Ok(())
    }

    fn parts(&self) -> Vec<&str> {
        self.path.split('/').collect()
    }

    /// The mount paths of the values this view reads: its `from`, or each `ps('NAME')` and
    /// `sm('NAME')` of its template written with a literal name (selectors dropped), shown at
    /// the mount path `shown(service, name)` gives.
    pub fn sources(&self, shown: impl Fn(Service, &str) -> Option<String>) -> Vec<String> {
        let text = match &self.source {
            ViewSource::Members { from, .. } => return vec![from.clone()],
            ViewSource::Template(text) => text,
        };
        let mut sources = Vec::new();
        for service in Service::ALL {
            let call = format!("{}(", service.dir_name());
            for (at, _) in text.match_indices(&call) {
                let rest = text[at + call.len()..].trim_start();
                let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') else { continue };
                let Some((name, _)) = rest[1..].split_once(quote) else { continue };
                let base = crate::provider::selector::split(name).map_or(name, |(base, _)| base);
                sources.extend(shown(service, base));
            }
        }
        sources
    }
}

/// For each view, the mount paths of the values it reads: `(source, view path)` pairs, so an
/// on-change rule on a view runs when one of its sources changes.
pub fn dependents(specs: &[ViewSpec], shown: impl Fn(Service, &str) -> Option<String>) -> Vec<(String, String)> {
    specs.iter().flat_map(|spec| spec.sources(&shown).into_iter().map(|source| (source, spec.path.clone()))).collect()
}

/// A node of the views: a directory holding views, or the view at this index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewNode {
    /// A directory on the way to views.
    Dir,
    /// The view at this index of [`Views`].
    File(usize),
}

/// The configured views.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Views {
    specs: Vec<ViewSpec>,
    dirs: BTreeSet<Vec<String>>,
}

impl Views {
    /// The views of `specs` (checked with [`ViewSpec::check`] first).
    pub fn new(specs: Vec<ViewSpec>) -> Views {
        let mut dirs = BTreeSet::new();
        for spec in &specs {
            let parts: Vec<String> = spec.parts().into_iter().map(str::to_string).collect();
            for end in 1..parts.len() {
                dirs.insert(parts[..end].to_vec());
            }
        }
        Views { specs, dirs }
    }

    /// The view node at `path` (a path of the mount root's own, not in a service), if any.
    pub fn at(&self, path: &NodePath) -> Option<ViewNode> {
        if path.service.is_some() || path.parts.is_empty() {
            return None;
        }
        if self.dirs.contains(&path.parts) {
            return Some(ViewNode::Dir);
        }
        let joined = path.parts.join("/");
        self.specs.iter().position(|spec| spec.path == joined).map(ViewNode::File)
    }

    /// The names directly in the view directory at `parts` (empty: the mount root), each with
    /// whether it is a directory.
    pub fn children(&self, parts: &[String]) -> Vec<(String, bool)> {
        let mut children: Vec<(String, bool)> = Vec::new();
        let below = |candidate: &[String]| candidate.len() == parts.len() + 1 && candidate.starts_with(parts);
        for dir in self.dirs.iter().filter(|d| below(d)) {
            children.push((dir[parts.len()].clone(), true));
        }
        for spec in &self.specs {
            let candidate: Vec<String> = spec.parts().into_iter().map(str::to_string).collect();
            if below(&candidate) && !children.iter().any(|(name, _)| *name == candidate[parts.len()]) {
                children.push((candidate[parts.len()].clone(), false));
            }
        }
        children
    }

    /// The view at `index`.
    pub fn spec(&self, index: usize) -> Option<&ViewSpec> {
        self.specs.get(index)
    }

    /// Whether any view is configured.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// How a view reads values: the value of a full name of a service, and the value at a mount
/// path. May wait on the service (or answer [`Error::WouldBlock`] where it must not).
pub trait ValueSource: Send + Sync {
    /// The value of `name` (a full name, with a selector if any) of `service`.
    fn named(&self, service: Service, name: &str) -> Result<Arc<CachedValue>>;
    /// The value shown at the mount path `path` (`sm/prod/db`).
    fn at_path(&self, path: &str) -> Result<Arc<CachedValue>>;
}

/// The content of view `spec` now. Any failure (a value missing, not a JSON object, a template
/// error) fails the whole: a view is never half rendered.
pub fn render(spec: &ViewSpec, values: Arc<dyn ValueSource>) -> Result<Vec<u8>> {
    match &spec.source {
        ViewSource::Members { from, format } => {
            let value = values.at_path(from).map_err(|err| match err {
                Error::WouldBlock => err,
                other => Error::InvalidInput(format!("{from}: {other}")),
            })?;
            let object = value
                .json_object()
                .ok_or_else(|| Error::InvalidInput(format!("{from} does not hold a JSON object")))?;
            formats::render(object, *format)
        }
        ViewSource::Template(text) => template::render(text, values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str) -> ViewSpec {
        ViewSpec { path: path.into(), source: ViewSource::Template("x".into()) }
    }

    #[test]
    fn views_make_their_directories() {
        let views = Views::new(vec![spec("views/app.env"), spec("views/db/url"), spec("top")]);
        let path = |parts: &[&str]| NodePath { service: None, parts: parts.iter().map(|p| p.to_string()).collect() };
        assert_eq!(views.at(&path(&["views"])), Some(ViewNode::Dir));
        assert_eq!(views.at(&path(&["views", "db", "url"])), Some(ViewNode::File(1)));
        assert_eq!(views.at(&path(&["views", "nope"])), None);
        let root = views.children(&[]);
        assert!(root.contains(&("views".into(), true)) && root.contains(&("top".into(), false)));
        assert_eq!(views.children(&["views".into()]), [("db".into(), true), ("app.env".into(), false)]);
    }

    #[test]
    fn a_view_knows_the_values_it_reads() {
        let template = "{{ sm('prod/db').password }}@{{ ps( \"/prod/host:3\" ) }}{{ sm(name) }}";
        let view = ViewSpec { path: "v".into(), source: ViewSource::Template(template.into()) };
        let shown =
            |service: Service, name: &str| Some(format!("{}/{}", service.dir_name(), name.trim_start_matches('/')));
        assert_eq!(view.sources(shown), ["ps/prod/host", "sm/prod/db"]);
        let members =
            ViewSpec { path: "e".into(), source: ViewSource::Members { from: "sm/a".into(), format: Format::Env } };
        assert_eq!(dependents(&[members], shown), [("sm/a".to_string(), "e".to_string())]);
    }

    #[test]
    fn view_paths_stay_out_of_services_and_control() {
        for bad in ["ps/x", "sm/x", ".secretfs/x", "a//b", "../x", "a/./b", ""] {
            assert!(spec(bad).check().is_err(), "{bad}");
        }
        assert!(spec("views/app.env").check().is_ok());
        let broken = ViewSpec { path: "v".into(), source: ViewSource::Template("{{ x".into()) };
        assert!(broken.check().is_err());
    }
}
