//! Sequential specifications: a string key/value register (get / put / append)
//! and a compare-and-set register (read / write / cas).

use super::text::Text;
use super::wgl::Model;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvInput {
    Get,
    Put(String),
    Append(String),
}

/// One key of a store whose keys start as the empty string.
pub struct KvModel;

impl Model for KvModel {
    type State = Text;
    type Input = KvInput;
    /// What a get read (puts and appends answer nothing).
    type Output = String;

    fn init(&self) -> Text {
        Text::default()
    }

    fn step(&self, state: &Text, input: &KvInput, output: Option<&String>) -> Option<Text> {
        match input {
            KvInput::Get => match output {
                Some(read) if !state.equals(read) => None,
                _ => Some(state.clone()),
            },
            KvInput::Put(v) => Some(Text::new(v)),
            KvInput::Append(v) => Some(state.append(v)),
        }
    }

    fn is_read_only(&self, input: &KvInput, output: Option<&String>) -> bool {
        *input == KvInput::Get && output.is_some()
    }

    const PRUNES: bool = true;

    /// Appends only extend the string: a get must read the current string
    /// followed by appends, or a put's value followed by appends.
    fn may_lead_to(&self, state: &Text, input: &KvInput, output: Option<&String>) -> bool {
        match (input, output) {
            (KvInput::Get, Some(read)) => state.is_prefix_of(read),
            _ => true,
        }
    }

    /// The string read must be the current one or a put's value, followed by
    /// appends from the window (each at most once; here reuse is allowed, which
    /// only makes the test weaker).
    fn may_reach(
        &self,
        state: &Text,
        leads: bool,
        goal: (&KvInput, Option<&String>),
        window: &[&KvInput],
    ) -> bool {
        let (KvInput::Get, Some(read)) = goal else {
            return true;
        };
        let appended = |from: usize| {
            let rest = &read.as_bytes()[from..];
            // reachable[i]: rest[..i] is a sequence of window appends.
            let mut reachable = vec![false; rest.len() + 1];
            reachable[0] = true;
            for i in 0..rest.len() {
                if !reachable[i] {
                    continue;
                }
                for input in window {
                    if let KvInput::Append(v) = input {
                        if !v.is_empty() && rest[i..].starts_with(v.as_bytes()) {
                            reachable[i + v.len()] = true;
                        }
                    }
                }
            }
            reachable[rest.len()]
        };
        if leads && appended(state.len()) {
            return true;
        }
        window.iter().any(|input| {
            matches!(input, KvInput::Put(v) if read.starts_with(v.as_str()) && appended(v.len()))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasInput {
    Read,
    Write(i64),
    Cas { from: i64, to: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutput {
    /// A read's value (None: absent).
    Read(Option<i64>),
    /// A write's acknowledgement.
    Written,
    /// Whether a cas swapped.
    Swapped(bool),
}

/// A register that starts absent.
pub struct CasRegister;

impl Model for CasRegister {
    type State = Option<i64>;
    type Input = CasInput;
    type Output = CasOutput;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &CasInput,
        output: Option<&CasOutput>,
    ) -> Option<Option<i64>> {
        match (input, output) {
            (CasInput::Read, Some(CasOutput::Read(v))) => (v == state).then_some(*state),
            (CasInput::Read, _) => Some(*state),
            (CasInput::Write(v), _) => Some(Some(*v)),
            (CasInput::Cas { from, .. }, Some(CasOutput::Swapped(false))) => {
                (*state != Some(*from)).then_some(*state)
            }
            (CasInput::Cas { from, to }, Some(_)) => (*state == Some(*from)).then_some(Some(*to)),
            // Unknown outcome: it swaps if it can; placed last, it has no visible effect.
            (CasInput::Cas { from, to }, None) => Some(if *state == Some(*from) {
                Some(*to)
            } else {
                *state
            }),
        }
    }

    const PRUNES: bool = true;

    /// A read (or a cas that swapped) must find the value it saw already there, or
    /// written by an operation that may go first (nothing makes it absent again).
    fn may_lead_to(
        &self,
        state: &Option<i64>,
        input: &CasInput,
        output: Option<&CasOutput>,
    ) -> bool {
        needed(input, output).is_none_or(|v| *state == v)
    }

    fn may_reach(
        &self,
        _state: &Option<i64>,
        leads: bool,
        goal: (&CasInput, Option<&CasOutput>),
        window: &[&CasInput],
    ) -> bool {
        leads
            || match needed(goal.0, goal.1) {
                Some(Some(v)) => window.iter().any(|input| {
                    matches!(input, CasInput::Write(w) | CasInput::Cas { to: w, .. } if *w == v)
                }),
                // Nothing makes the register absent again.
                Some(None) => false,
                None => true,
            }
    }

    fn needs(&self, input: &CasInput, output: Option<&CasOutput>) -> Option<Option<i64>> {
        needed(input, output)
    }

    fn may_produce(
        &self,
        input: &CasInput,
        output: Option<&CasOutput>,
    ) -> Option<(Option<i64>, bool)> {
        match (input, output) {
            (CasInput::Write(v), _) => Some((Some(*v), true)),
            (CasInput::Cas { to, .. }, Some(CasOutput::Swapped(true))) => Some((Some(*to), true)),
            // Unknown: it swaps only if the value matches.
            (CasInput::Cas { to, .. }, None) => Some((Some(*to), false)),
            (CasInput::Cas { .. } | CasInput::Read, _) => None,
        }
    }

    fn is_read_only(&self, input: &CasInput, output: Option<&CasOutput>) -> bool {
        matches!(
            (input, output),
            (CasInput::Read, Some(CasOutput::Read(_)))
                | (CasInput::Cas { .. }, Some(CasOutput::Swapped(false)))
        )
    }
}

/// The value a read-only register operation needs to find (None: it needs none).
fn needed(input: &CasInput, output: Option<&CasOutput>) -> Option<Option<i64>> {
    match (input, output) {
        (CasInput::Read, Some(CasOutput::Read(v))) => Some(*v),
        (CasInput::Cas { from, .. }, Some(CasOutput::Swapped(true))) => Some(Some(*from)),
        _ => None,
    }
}
