//! Sequential specifications: a string key/value register (get / put / append)
//! and a compare-and-set register (read / write / cas).

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
    type State = String;
    type Input = KvInput;
    /// What a get read (puts and appends answer nothing).
    type Output = String;

    fn init(&self) -> String {
        String::new()
    }

    fn step(&self, state: &String, input: &KvInput, output: Option<&String>) -> Option<String> {
        match input {
            KvInput::Get => match output {
                Some(read) if read != state => None,
                _ => Some(state.clone()),
            },
            KvInput::Put(v) => Some(v.clone()),
            KvInput::Append(v) => Some(format!("{state}{v}")),
        }
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
}
