// Heavy headers that nearly every test includes, compiled once into a precompiled header.
// Boost.Test stays out: its header must see each test's BOOST_TEST_MODULE to generate main().
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <boost/json.hpp>
#include <boost/url.hpp>
