// Breaks `std-instant`: wall-clock time type in the stack.
use std::time::Instant;

fn started() -> Instant {
    todo!()
}
