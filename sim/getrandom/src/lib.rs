//! getrandom 0.2's API implemented on libc's `getrandom(3)`.
//!
//! Inside a madsim simulation libc's symbol is madsim's seeded generator, so every
//! crate that draws entropy through getrandom 0.2 (rand 0.8's `thread_rng`, raft-rs's
//! election timeouts) becomes a function of the seed. Outside a simulation the call
//! reaches the kernel as usual.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

use core::fmt;
use core::mem::MaybeUninit;
use core::num::NonZeroU32;

/// An error from the entropy source: an OS errno or one of getrandom's own codes.
#[derive(Copy, Clone, Eq, PartialEq)]
pub struct Error(NonZeroU32);

const fn internal_error(n: u16) -> Error {
    // SAFETY-free: INTERNAL_START + n is never zero.
    match NonZeroU32::new(Error::INTERNAL_START + n as u32) {
        Some(code) => Error(code),
        None => panic!("internal error code is zero"),
    }
}

impl Error {
    pub const UNSUPPORTED: Error = internal_error(0);
    pub const ERRNO_NOT_POSITIVE: Error = internal_error(1);
    pub const UNEXPECTED: Error = internal_error(2);
    pub const IOS_SEC_RANDOM: Error = internal_error(3);
    pub const WINDOWS_RTL_GEN_RANDOM: Error = internal_error(4);
    pub const FAILED_RDRAND: Error = internal_error(5);
    pub const NO_RDRAND: Error = internal_error(6);
    pub const WEB_CRYPTO: Error = internal_error(7);
    pub const WEB_GET_RANDOM_VALUES: Error = internal_error(8);
    pub const VXWORKS_RAND_SECURE: Error = internal_error(11);
    pub const NODE_CRYPTO: Error = internal_error(12);
    pub const NODE_RANDOM_FILL_SYNC: Error = internal_error(13);
    pub const NODE_ES_MODULE: Error = internal_error(14);
    pub const INTERNAL_START: u32 = 1 << 31;
    pub const CUSTOM_START: u32 = (1 << 31) + (1 << 30);

    /// The OS errno behind this error, if it is one.
    pub fn raw_os_error(self) -> Option<i32> {
        if self.0.get() < Self::INTERNAL_START {
            Some(self.0.get() as i32)
        } else {
            None
        }
    }

    /// The numeric code of this error.
    pub const fn code(self) -> NonZeroU32 {
        self.0
    }
}

impl From<NonZeroU32> for Error {
    fn from(code: NonZeroU32) -> Self {
        Error(code)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.raw_os_error() {
            Some(errno) => write!(f, "Error {{ os_error: {errno} }}"),
            None => write!(f, "Error {{ internal_code: {} }}", self.0.get()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.raw_os_error() {
            Some(errno) => write!(f, "OS error {errno} from getrandom"),
            None => write!(f, "getrandom error {}", self.0.get()),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        match err.raw_os_error() {
            Some(errno) => std::io::Error::from_raw_os_error(errno),
            None => std::io::Error::other(err),
        }
    }
}

/// Fills `dest` with random bytes from libc's `getrandom`.
pub fn getrandom(dest: &mut [u8]) -> Result<(), Error> {
    let mut filled = 0;
    while filled < dest.len() {
        let rest = &mut dest[filled..];
        // SAFETY: the pointer and length describe the writable slice `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let errno = last_errno();
            if errno == libc::EINTR {
                continue;
            }
            return Err(NonZeroU32::new(errno as u32).map_or(Error::ERRNO_NOT_POSITIVE, Error));
        }
        filled += n as usize;
    }
    Ok(())
}

/// Fills possibly uninitialised `dest` and returns it as initialised bytes.
pub fn getrandom_uninit(dest: &mut [MaybeUninit<u8>]) -> Result<&mut [u8], Error> {
    for byte in dest.iter_mut() {
        byte.write(0);
    }
    // SAFETY: every element was initialised just above.
    let bytes = unsafe { &mut *(dest as *mut [MaybeUninit<u8>] as *mut [u8]) };
    getrandom(bytes)?;
    Ok(bytes)
}

fn last_errno() -> i32 {
    // SAFETY: __errno_location always returns a valid thread-local pointer.
    unsafe { *libc::__errno_location() }
}
