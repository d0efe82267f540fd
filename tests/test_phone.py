import phonenumbers
import pytest

from voice.phone import InvalidPhone, NotAllowed, check_dialable, mask, normalise


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


@pytest.mark.parametrize("raw, canonical", [
    ("2540712345695", "+254712345695"),    # Kenya's trunk 0 written after the country code
    ("+4407400123456", "+447400123456"),
    ("+3606201234567", "+36201234567"),    # Hungary's trunk 06
    ("+789123456789", "+79123456789"),     # Russia's trunk 8
    ("+2550712345678", "+255712345678"),
])
def test_a_trunk_prefix_after_the_country_code_is_dropped(raw, canonical):
    assert normalise(raw) == canonical == normalise(canonical)


def _trunk_forms():
    """Each region's example mobile number written with its trunk prefix after the country code, and its E.164."""
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is None or not metadata.national_prefix:
            continue
        national = phonenumbers.national_significant_number(example)
        yield (f"+{example.country_code}{metadata.national_prefix}{national}",
               phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))


@pytest.mark.parametrize("raw, canonical", list(_trunk_forms()))
def test_every_country_has_one_form_of_a_number_or_refuses_it(raw, canonical):
    """Whatever numbering plan: a trunk form is read as the canonical number, or refused; never a second number."""
    try:
        number = normalise(raw)
        check_dialable(number)
    except (InvalidPhone, NotAllowed):
        return
    assert number == canonical
