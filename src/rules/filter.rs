//! The filter of a rule's trigger: a small expression over a record's attributes,
//! e.g. `estimatedvalue >= 10000 and statecode == 0`.
//!
//! Comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`) of an attribute or a literal (a
//! number, a string in single or double quotes, `true`, `false`, `null`), joined with
//! `and`, `or`, `not` and parentheses. An attribute the record does not have is
//! `null`. Values of different types are never equal and never ordered, so a
//! mistyped literal makes a comparison false rather than guessing a conversion.
//!
//! Why a language of its own rather than minijinja's `compile_expression` (already a
//! dependency), weighed for the house issue: minijinja orders values of different
//! types by their kind instead of refusing them, so `estimatedvalue > '5'` would be
//! true or false by type order rather than never true as documented; its expressions
//! also take filters, function calls and `range`, more than a trigger needs or
//! `check-config` can vet; and its errors cannot say "'=' compares nothing; write
//! '=='" at the column. Keeping these semantics on top of it would need a walk of
//! its expression tree, which it does not expose. This file is the simpler of the two.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Operand, Op, Operand),
    Truthy(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Column(String),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Literal(Value),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(name) => format!("'{name}'"),
            Token::Literal(value) => value.to_string(),
            Token::Op(op) => format!("'{}'", op.text()),
            Token::And => "'and'".into(),
            Token::Or => "'or'".into(),
            Token::Not => "'not'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
        }
    }
}

/// A filter that does not parse; the message gives the column (from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct FilterError {
    /// Where, counted in characters from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        i: 0,
    };
    let mut tokens = Vec::new();
    while let Some(c) = lexer.peek(0) {
        if c.is_whitespace() {
            lexer.i += 1;
            continue;
        }
        let start = lexer.i;
        let token = match c {
            '(' | ')' => {
                lexer.i += 1;
                if c == '(' {
                    Token::Open
                } else {
                    Token::Close
                }
            }
            '=' | '!' | '<' | '>' => lexer.operator(c)?,
            '\'' | '"' => lexer.string(c)?,
            c if c.is_ascii_digit()
                || (c == '-' && lexer.peek(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                lexer.number()?
            }
            c if c.is_alphabetic() || c == '_' => lexer.word(),
            other => return Err(lexer.error(start, format!("unexpected character {other:?}"))),
        };
        tokens.push((start, token));
    }
    Ok(tokens)
}

/// The filter's text as characters, and how far the lexer has read.
struct Lexer {
    chars: Vec<char>,
    i: usize,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn error(&self, at: usize, message: String) -> FilterError {
        FilterError {
            column: at + 1,
            message,
        }
    }

    /// Moves past the characters `keep` takes; the text they make.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.i;
        while self.peek(0).is_some_and(&keep) {
            self.i += 1;
        }
        self.chars[start..self.i].iter().collect()
    }

    /// A comparison starting with `c`; a lone `=` or `!` is named with what to write.
    fn operator(&mut self, c: char) -> Result<Token, FilterError> {
        let (op, width) = match (c, self.peek(1)) {
            ('=', Some('=')) => (Op::Eq, 2),
            ('!', Some('=')) => (Op::Ne, 2),
            ('<', Some('=')) => (Op::Le, 2),
            ('>', Some('=')) => (Op::Ge, 2),
            ('<', _) => (Op::Lt, 1),
            ('>', _) => (Op::Gt, 1),
            ('=', _) => return Err(self.error(self.i, "'=' compares nothing; write '=='".into())),
            _ => {
                let message = "'!' alone is not an operator; write 'not' or '!='";
                return Err(self.error(self.i, message.into()));
            }
        };
        self.i += width;
        Ok(Token::Op(op))
    }

    /// A string in `quote`s; a backslash takes the next character as it is.
    fn string(&mut self, quote: char) -> Result<Token, FilterError> {
        let start = self.i;
        self.i += 1;
        let mut value = String::new();
        loop {
            match self.peek(0) {
                None => return Err(self.error(start, "a string that is never closed".into())),
                Some('\\') if self.peek(1).is_some() => {
                    value.extend(self.peek(1));
                    self.i += 2;
                }
                Some(ch) => {
                    self.i += 1;
                    if ch == quote {
                        return Ok(Token::Literal(Value::String(value)));
                    }
                    value.push(ch);
                }
            }
        }
    }

    /// A number (`_` groups digits): an integer when it is one, else a float.
    fn number(&mut self) -> Result<Token, FilterError> {
        let start = self.i;
        self.i += 1;
        let rest = self.take_while(|c| c.is_ascii_digit() || c == '.' || c == '_');
        let text: String = std::iter::once(self.chars[start])
            .chain(rest.chars())
            .filter(|c| *c != '_')
            .collect();
        let number = text.parse::<i64>().map(Value::from).ok().or_else(|| {
            text.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
        });
        number
            .map(Token::Literal)
            .ok_or_else(|| self.error(start, format!("{text:?} is not a number")))
    }

    /// A keyword, a literal word (`true`, `false`, `null`) or a column name.
    fn word(&mut self) -> Token {
        let word = self.take_while(|c| c.is_alphanumeric() || c == '_' || c == '.');
        match word.as_str() {
            "and" => Token::And,
            "or" => Token::Or,
            "not" => Token::Not,
            "true" => Token::Literal(Value::Bool(true)),
            "false" => Token::Literal(Value::Bool(false)),
            "null" => Token::Literal(Value::Null),
            _ => Token::Ident(word),
        }
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(c, _)| *c) + 1
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            column: self.column(),
            message: message.into(),
        })
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Token::Not) {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Token::Close) {
                return self.fail("expected ')'");
            }
            self.at += 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        match self.peek() {
            Some(Token::Op(op)) => {
                let op = *op;
                self.at += 1;
                let right = self.operand()?;
                Ok(Expr::Compare(left, op, right))
            }
            _ => Ok(Expr::Truthy(left)),
        }
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        match self.peek().cloned() {
            Some(Token::Ident(name)) => {
                self.at += 1;
                Ok(Operand::Column(name))
            }
            Some(Token::Literal(value)) => {
                self.at += 1;
                Ok(Operand::Literal(value))
            }
            Some(other) => self.fail(format!(
                "expected an attribute or a value, found {}",
                other.describe()
            )),
            None => self.fail("expected an attribute or a value, found the end"),
        }
    }
}

impl Filter {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let tokens = lex(text)?;
        if tokens.is_empty() {
            return Err(FilterError {
                column: 1,
                message: "empty".into(),
            });
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            end: text.chars().count(),
        };
        let expr = parser.or()?;
        if let Some(token) = parser.peek() {
            let found = token.describe();
            return parser.fail(format!(
                "unexpected {found}; join conditions with 'and' or 'or'"
            ));
        }
        Ok(Self { expr })
    }

    /// The attributes the filter reads.
    pub fn columns(&self) -> BTreeSet<String> {
        fn walk(expr: &Expr, out: &mut BTreeSet<String>) {
            let mut operand = |o: &Operand| {
                if let Operand::Column(name) = o {
                    out.insert(name.clone());
                }
            };
            match expr {
                Expr::Or(a, b) | Expr::And(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Not(inner) => walk(inner, out),
                Expr::Compare(a, _, b) => {
                    operand(a);
                    operand(b);
                }
                Expr::Truthy(a) => operand(a),
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.expr, &mut out);
        out
    }

    /// Whether the filter holds for a record with these attributes.
    pub fn matches(&self, attributes: &Map<String, Value>) -> bool {
        eval(&self.expr, attributes)
    }
}

fn value<'a>(operand: &'a Operand, attributes: &'a Map<String, Value>) -> &'a Value {
    match operand {
        Operand::Column(name) => attributes.get(name).unwrap_or(&Value::Null),
        Operand::Literal(value) => value,
    }
}

fn eval(expr: &Expr, attributes: &Map<String, Value>) -> bool {
    match expr {
        Expr::Or(a, b) => eval(a, attributes) || eval(b, attributes),
        Expr::And(a, b) => eval(a, attributes) && eval(b, attributes),
        Expr::Not(inner) => !eval(inner, attributes),
        Expr::Truthy(operand) => match value(operand, attributes) {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        },
        Expr::Compare(a, op, b) => {
            let ordering = compare(value(a, attributes), value(b, attributes));
            match op {
                Op::Eq => ordering == Some(Ordering::Equal),
                Op::Ne => ordering != Some(Ordering::Equal),
                Op::Lt => ordering == Some(Ordering::Less),
                Op::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => ordering == Some(Ordering::Greater),
                Op::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
            }
        }
    }
}

/// How two values compare; `None` when they are of different types (or not ordered).
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (x, y) if x == y => Some(Ordering::Equal),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn comparisons_and_boolean_operators_follow_precedence() {
        let filter = Filter::parse("estimatedvalue >= 10000 and statecode == 0").unwrap();
        assert!(filter.matches(&record(json!({"estimatedvalue": 10000, "statecode": 0}))));
        assert!(!filter.matches(&record(json!({"estimatedvalue": 9999.5, "statecode": 0}))));
        assert!(!filter.matches(&record(json!({"estimatedvalue": 20000, "statecode": 1}))));

        // and binds tighter than or
        let filter = Filter::parse("a == 1 or b == 2 and c == 3").unwrap();
        assert!(filter.matches(&record(json!({"a": 1}))));
        assert!(!filter.matches(&record(json!({"b": 2}))));
        let filter = Filter::parse("(a == 1 or b == 2) and c == 3").unwrap();
        assert!(!filter.matches(&record(json!({"a": 1}))));
        assert!(filter.matches(&record(json!({"b": 2, "c": 3}))));

        let filter = Filter::parse("not (name == 'Big deal') and name != \"x\"").unwrap();
        assert!(filter.matches(&record(json!({"name": "Small deal"}))));
        assert!(!filter.matches(&record(json!({"name": "Big deal"}))));
        assert_eq!(
            filter.columns().into_iter().collect::<Vec<_>>(),
            vec!["name".to_string()]
        );
    }

    #[test]
    fn missing_attributes_are_null_and_types_never_mix() {
        let filter = Filter::parse("budget > 5").unwrap();
        assert!(!filter.matches(&Map::new()));
        assert!(!filter.matches(&record(json!({"budget": "10"}))));
        assert!(Filter::parse("budget == null")
            .unwrap()
            .matches(&Map::new()));
        assert!(Filter::parse("budget != 5").unwrap().matches(&Map::new()));
        assert!(Filter::parse("isprivate")
            .unwrap()
            .matches(&record(json!({"isprivate": true}))));
        assert!(Filter::parse("x < -1.5")
            .unwrap()
            .matches(&record(json!({"x": -2}))));
    }

    #[test]
    fn errors_give_the_column() {
        let error = Filter::parse("estimatedvalue >= ").unwrap_err();
        assert_eq!(error.column, 19);
        assert!(error.message.contains("found the end"), "{error}");
        let error = Filter::parse("a = 1").unwrap_err();
        assert_eq!((error.column, error.message.contains("'=='")), (3, true));
        let error = Filter::parse("a == 1 b == 2").unwrap_err();
        assert_eq!(error.column, 8);
        let error = Filter::parse("(a == 1").unwrap_err();
        assert!(error.message.contains("')'"));
        let error = Filter::parse("name == 'open").unwrap_err();
        assert_eq!(error.column, 9);
        assert!(Filter::parse("   ").is_err());
    }
}
