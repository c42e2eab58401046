//! Test-only: exports `tsohost:driver/driver` from a future, incompatible
//! major version of the package. The host must refuse it and name both
//! versions.

wit_bindgen::generate!({
    inline: "
        package tsohost:driver@9.0.0;
        interface driver {
            info: func() -> string;
        }
        world consensus-driver {
            export driver;
        }
    ",
});

struct Future;

impl exports::tsohost::driver::driver::Guest for Future {
    fn info() -> String {
        "from the future".into()
    }
}

export!(Future);
