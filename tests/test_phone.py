import pytest

from voice.phone import InvalidPhone, mask, normalise


@pytest.mark.parametrize(
    "raw",
    ["254712345678", "+254712345678", " 254712345678", "254 712 345 678", "+254-712-345-678", "(254) 712-345678"],
)
def test_normalise_accepts_the_ways_people_write_a_number(raw):
    assert normalise(raw) == "+254712345678"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (None, "required"),
        ("", "required"),
        ("   ", "required"),
        ("123456", "7 to 15"),
        ("1234567890123456", "7 to 15"),
        ("25471234567a", "only digits"),
        ("+25471234567+", "only digits"),
        ("٢٥٤٧١٢٣٤٥٦٧٨", "only digits"),
        ("0712345678", "country code"),
    ],
)
def test_normalise_refuses_what_cannot_be_dialled(raw, reason):
    with pytest.raises(InvalidPhone, match=reason):
        normalise(raw)


def test_normalise_takes_the_shortest_and_longest_e164_lengths():
    assert normalise("1234567") == "+1234567"
    assert normalise("123456789012345") == "+123456789012345"


@pytest.mark.parametrize(
    "number, masked",
    [("+254712345678", "+2547****5678"), ("254712345678", "2547****5678"), ("+1234567", "+12***67"), (None, "-")],
)
def test_mask_hides_the_middle_of_a_number(number, masked):
    assert mask(number) == masked
