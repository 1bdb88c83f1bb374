//! Wildcard matching (`*` any run, `?` one character) as IAM uses it for actions, resources,
//! `StringLike` and `ArnLike`, compiled once so the common shapes (`*`, exact, `prefix*`) skip
//! the general matcher.

/// A compiled wildcard pattern. For case-insensitive use (action names) the pattern is stored
/// lowercased and compared with the subject's ASCII-lowercased bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pattern {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Glob(Box<str>),
}

impl Pattern {
    pub(crate) fn compile(text: &str, fold_case: bool) -> Pattern {
        let text: Box<str> = if fold_case {
            text.to_ascii_lowercase().into()
        } else {
            text.into()
        };
        if &*text == "*" {
            return Pattern::Any;
        }
        let wild = |c: char| c == '*' || c == '?';
        match text.find(wild) {
            None => Pattern::Exact(text),
            Some(i) if i == text.len() - 1 && text.ends_with('*') => {
                Pattern::Prefix(text[..i].into())
            }
            Some(_) => Pattern::Glob(text),
        }
    }

    /// Whether `subject` matches. With `fold_case`, the pattern must have been compiled with
    /// `fold_case` too.
    #[inline]
    pub(crate) fn matches(&self, subject: &str, fold_case: bool) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(p) => {
                if fold_case {
                    p.eq_ignore_ascii_case(subject)
                } else {
                    **p == *subject
                }
            }
            Pattern::Prefix(p) => {
                subject.len() >= p.len()
                    && subject.is_char_boundary(p.len())
                    && if fold_case {
                        subject[..p.len()].eq_ignore_ascii_case(p)
                    } else {
                        subject.starts_with(&**p)
                    }
            }
            Pattern::Glob(p) => glob(p.as_bytes(), subject.as_bytes(), fold_case),
        }
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// Iterative wildcard match with single-star backtracking: O(len(p) * len(s)) worst case, no
/// recursion, no allocation. `?` consumes one UTF-8 character.
fn glob(p: &[u8], s: &[u8], fold_case: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if fold_case {
            a == b.to_ascii_lowercase()
        } else {
            a == b
        }
    };
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<usize> = None;
    let mut mark = 0usize;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            si += 1;
            while si < s.len() && is_continuation(s[si]) {
                si += 1;
            }
        } else if pi < p.len() && p[pi] != b'*' && eq(p[pi], s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = si;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            while mark < s.len() && is_continuation(s[mark]) {
                mark += 1;
            }
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// An ARN pattern for `ArnEquals`/`ArnLike`: the six colon-separated parts are matched one by
/// one, each with wildcards; the last part (the resource) keeps any further colons.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArnPattern {
    parts: Box<[Pattern]>,
}

fn split_arn(s: &str) -> Option<[&str; 6]> {
    let mut it = s.splitn(6, ':');
    let parts = [
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    ];
    Some(parts)
}

impl ArnPattern {
    /// None when `text` does not have the six parts of an ARN.
    pub(crate) fn compile(text: &str) -> Option<ArnPattern> {
        let parts = split_arn(text)?;
        Some(ArnPattern {
            parts: parts.iter().map(|p| Pattern::compile(p, false)).collect(),
        })
    }

    pub(crate) fn matches(&self, arn: &str) -> bool {
        match split_arn(arn) {
            Some(parts) => self
                .parts
                .iter()
                .zip(parts.iter())
                .all(|(p, s)| p.matches(s, false)),
            None => false,
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn shapes_compile_to_the_cheap_matchers() {
        assert_eq!(Pattern::compile("*", false), Pattern::Any);
        assert_eq!(
            Pattern::compile("kms:*", false),
            Pattern::Prefix("kms:".into())
        );
        assert_eq!(
            Pattern::compile("Decrypt", true),
            Pattern::Exact("decrypt".into())
        );
        assert!(matches!(Pattern::compile("a*b", false), Pattern::Glob(_)));
        assert!(matches!(Pattern::compile("a?", false), Pattern::Glob(_)));
    }

    #[test]
    fn glob_semantics() {
        let m = |p: &str, s: &str| Pattern::compile(p, false).matches(s, false);
        assert!(m("GenerateDataKey*", "GenerateDataKey"));
        assert!(m("GenerateDataKey*", "GenerateDataKeyWithoutPlaintext"));
        assert!(!m("GenerateDataKey*", "Generate"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "aéc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", ""));
        assert!(!m("abc", "ABC"));
        assert!(m("*x", "xxx"));
        let f = |p: &str, s: &str| Pattern::compile(p, true).matches(s, true);
        assert!(f("kms:Gen*Key", "KMS:GENERATEDATAKEY"));
        assert!(f("Decrypt", "dEcRyPt"));
        assert!(f("DEC*", "decrypt"));
    }

    #[test]
    fn arn_parts_match_separately() {
        let p = ArnPattern::compile("arn:aws:iam::*:role/app-*").unwrap();
        assert!(p.matches("arn:aws:iam::111122223333:role/app-one"));
        assert!(!p.matches("arn:aws:iam::111122223333:user/app-one"));
        assert!(!p.matches("not-an-arn"));
        assert!(ArnPattern::compile("nope").is_none());
        let q = ArnPattern::compile("arn:aws:kms:*:111122223333:key/*").unwrap();
        assert!(q.matches("arn:aws:kms:eu-west-1:111122223333:key/1234"));
        assert!(!q.matches("arn:aws:kms:eu-west-1:444455556666:key/1234"));
    }
}
