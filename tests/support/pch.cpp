// The translation unit that carries the tests' precompiled header.
#include "pch.hpp"
