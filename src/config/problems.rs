//! The list of configuration problems a load collects, each tied to a key path.

use std::fmt;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `tenants[0].connectors[1].application_id`; empty for the file as a whole.
    pub path: String,
    /// What is wrong, and where useful what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// A list holding a single problem.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        let mut problems = Self::default();
        problems.push(path, message);
        problems
    }

    /// Records a problem, unless one was already recorded at this path or above it:
    /// a value that failed to parse need not also be reported as missing.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        if !self.covers(&path) {
            self.0.push(Problem {
                path,
                message: message.into(),
            });
        }
    }

    /// Whether a problem was recorded at `path` or anywhere below it.
    pub fn covers_any(&self, path: &str) -> bool {
        self.0.iter().any(|p| {
            p.path.strip_prefix(path).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
        })
    }

    fn covers(&self, path: &str) -> bool {
        self.0.iter().any(|p| {
            !p.path.is_empty()
                && path.strip_prefix(p.path.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
                })
        })
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in the order found.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_path_covers_itself_and_below_but_not_siblings() {
        let mut p = Problems::one("tenants[0].connectors", "bad");
        p.push("tenants[0].connectors", "again");
        p.push("tenants[0].connectors[1].id", "missing");
        p.push("tenants[0].connectors_extra", "unknown key");
        p.push("tenants[0].id", "missing");
        let shown: Vec<String> = p.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            shown,
            [
                "tenants[0].connectors: bad",
                "tenants[0].connectors_extra: unknown key",
                "tenants[0].id: missing"
            ]
        );
    }
}
