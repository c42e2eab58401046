//! Test-only: a WASI command component, valid but not a tsohost driver. The
//! host must refuse it and name the world it expected.

fn main() {
    println!("I am not a tsohost driver");
}
